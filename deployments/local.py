"""Running the whole router on this machine: Ray, Serve, and for the
embedded default the simulated providers. Used by ``nemo-router run``, the
tests and the benchmarks, so all three run the same thing.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ray
from ray import serve

from router.config import RouterConfig, load_config
from router.defaults import SIMULATED_PROFILES, embedded_default

from deployments.app import APP_NAME, build_app
from deployments.serve_ports import apply_serve_ports
from deployments.stop import DrainReport, end_leftovers, serve_children, stop

__all__ = ["LocalRouter", "deploy"]

log = logging.getLogger(__name__)


@dataclass
class LocalRouter:
    """A router this process started; leaving ``start``'s block stops it
    (``deployments.stop``: drain for ``server.stop_grace_s``, flush, shut
    down, no process left behind)."""

    config: RouterConfig
    url: str
    simulator: object | None = None
    stop_report: DrainReport | None = None  # set once stopped
    skip_drain: bool = False  # set (a second Ctrl-C) to stop at once
    _haproxies: list = field(default_factory=list, repr=False)

    @classmethod
    @contextlib.contextmanager
    def start(cls, config_path: str | None = None, port: int | None = None, turn_log_path: str = "./turnlog-data") -> Iterator["LocalRouter"]:
        with contextlib.ExitStack() as stack:
            simulator = None
            if config_path:
                config = load_config(config_path, environ=os.environ)
            else:
                from simprovider import start_simulator

                simulator = stack.enter_context(start_simulator(SIMULATED_PROFILES))
                config = embedded_default(simulator.url, os.environ, turn_log_path=turn_log_path)
            if port is not None:
                config = config.model_copy(update={"server": config.server.model_copy(update={"port": port})})
            router = cls(config, "", simulator)
            if not ray.is_initialized():
                apply_serve_ports(config.server.port)  # read by every Ray process at start
                _apply_local_drain_settings()
                with _package_working_directory():
                    ray.init(include_dashboard=False, log_to_driver=False)
                stack.callback(router._end_leftovers)  # after Ray is down
                stack.callback(ray.shutdown)
            router.url = deploy(config)
            stack.callback(router._stop)
            yield router

    def _stop(self) -> None:
        self._haproxies = serve_children()
        grace_s = None if self.skip_drain else self.config.server.stop_grace_s
        try:
            self.stop_report = stop(self.config, APP_NAME, grace_s)
        except KeyboardInterrupt:  # a second Ctrl-C: stop now
            log.warning("drain interrupted; stopping now")
            stop(self.config, APP_NAME, None)

    def _end_leftovers(self) -> None:
        ended = end_leftovers(self._haproxies)
        if ended:
            log.warning("ended HAProxy processes Serve left running: %s", ended)


@contextlib.contextmanager
def _package_working_directory() -> Iterator[None]:
    """Start Ray from the folder that holds the router's own packages. Ray
    puts the driver's working directory first on every worker's import path
    (and its processes, HAProxy included, keep it as their own working
    directory, so it must outlive them); a user's folder named like one of
    the router's packages (``router``, ``deployments``: common names) would
    otherwise shadow them in every replica. Paths in the config are made
    absolute before deploying (``deployments.app``)."""
    here = os.getcwd()
    os.chdir(PACKAGE_ROOT)
    try:
        yield
    finally:
        os.chdir(here)


def _apply_local_drain_settings(environ=os.environ) -> None:
    """Our own drain (``deployments.stop``) runs before Serve stops any
    replica, so Serve's wait for load balancers to deregister a replica
    (30 s by default, meant for clusters behind an external balancer) has
    nothing left to protect here and would only hold up the stop."""
    environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "0")


PACKAGE_ROOT = Path(__file__).resolve().parents[1]
"""Where ``router`` and ``deployments`` are (the checkout, or site-packages)."""


def deploy(config: RouterConfig) -> str:
    """Start Serve's HTTP endpoint on the config's host/port and deploy."""
    host, port = config.server.host, config.server.port
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(config), name=APP_NAME, route_prefix="/")
    return f"http://{host}:{port}"
