"""Every port a router's Ray Serve instance opens, derived from the router's
own HTTP port, so that two routers on one machine (a test run and a
``make run``, two configs side by side) never share one.

Serve reads these from the environment of every Ray process when it is
imported, so they are set before Ray starts (``deployments.local``, and the
tests' Ray session). With the router on port P:

=========================================  ===============  =======================================
variable                                   value            what listens there
=========================================  ===============  =======================================
RAY_SERVE_FALLBACK_PROXY_HTTP_PORT         P + 1            Serve's Python proxy behind HAProxy
RAY_SERVE_FALLBACK_PROXY_GRPC_PORT         P + 2            its gRPC side
RAY_SERVE_HAPROXY_METRICS_PORT             P + 3            HAProxy's Prometheus metrics
RAY_SERVE_HAPROXY_STATS_PORT               P + 4            HAProxy's stats page
RAY_SERVE_DIRECT_INGRESS_{MIN,MAX}_HTTP    P + 100 .. 199   each ingress replica's own HTTP port
RAY_SERVE_DIRECT_INGRESS_{MIN,MAX}_GRPC    P + 200 .. 299   and gRPC port
=========================================  ===============  =======================================

Serve's defaults (8500, 9500, 9101, 8404, 30000-31000, 40000-41000) are the
same for every instance: two routers would bind, or worse forward to, each
other's. HAProxy binds its metrics and stats ports on every interface
(Serve's template gives no host for them): keep P + 3 and P + 4 closed at the
firewall where that matters. On a cluster started by ``ray up`` / ``serve
deploy``, set the same variables in the nodes' environment.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

__all__ = ["SERVE_PORT_SPAN", "serve_port_environment", "apply_serve_ports"]

SERVE_PORT_SPAN = 300
"""Ports above the router's own that its Serve instance may use."""


def serve_port_environment(port: int) -> dict[str, str]:
    """The Serve port variables for a router listening on ``port``."""
    return {
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(port + 1),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(port + 2),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(port + 3),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(port + 4),
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(port + 100),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(port + 199),
        "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(port + 200),
        "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(port + 299),
    }


def apply_serve_ports(port: int, environ: MutableMapping[str, str] = os.environ) -> None:
    """Set them for this process and the Ray processes it starts. Derived
    values replace inherited ones: a router started from another router's
    shell (or from the tests) must not inherit that router's ports."""
    environ.update(serve_port_environment(port))
