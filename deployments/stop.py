"""Stopping a router this process started: drain, flush, shut down, and
leave no process behind.

1. **Drain** (``drain``): every ingress replica refuses new turns from now
   on (503 ``router_stopping`` with ``retry-after``: a client or load
   balancer retries elsewhere); every replica that runs turns (the
   provider-callers, or the ingress replicas with ``upstream_calls:
   ingress``) lets its turns finish for ``server.stop_grace_s``, then stops
   the rest, each ended with the router's SSE error event and a record
   (``router.turn.stop``), and flushes its turn log. Both go through Serve's
   ``broadcast``, which reaches every replica.
2. **Shut down**: the application is deleted (its replicas are idle now, so
   Serve stops them at once), then Serve, then Ray.
3. **Nothing left behind**: Serve's HAProxy is a child of a Ray worker and
   can outlive it (reparented to init, still listening on the router's
   port) when its parent is killed before it could stop it. The HAProxy
   processes under this one are noted before the shutdown, and any still
   running after it are ended by PID (psutil checks each is the same
   process, not a reused PID).

Only for routers this process started (``LocalRouter``); a router deployed
with ``serve deploy`` on a cluster is stopped by Serve's own graceful
shutdown (``graceful_shutdown_timeout_s`` is ``stop_grace_s`` plus a margin,
``deployments.ingress``/``caller``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import psutil
from ray import serve

from router.config import RouterConfig

__all__ = [
    "DrainReport", "GRACEFUL_SHUTDOWN_POLL_S", "ROLLOUT_SURGE_PERCENT", "SHUTDOWN_MARGIN_S",
    "drain", "end_leftovers", "serve_children", "stop",
]

log = logging.getLogger(__name__)

# Beyond the grace period: the stopped turns' last events, the turn-log
# flush and Serve's own replica shutdown.
SHUTDOWN_MARGIN_S = 5.0
# How often Serve looks whether a stopping replica is idle (its default, 2 s,
# would add up to 2 s to every stop).
GRACEFUL_SHUTDOWN_POLL_S = 0.2
# A redeploy (serve deploy, serve run again) starts every replacement before
# it stops an old replica: Serve's default (0) stops first, which leaves a
# one-replica deployment with none taking new turns while the old one drains
# its streams (up to ``stop_grace_s``).
ROLLOUT_SURGE_PERCENT = 100
_LEFTOVER_TERM_S = 2.0


@dataclass
class DrainReport:
    in_flight: int = 0  # turns running when the drain began
    stopped: int = 0  # of those, ended by the router at the end of the grace period
    left: int = 0  # still live after that (their processes are ended with Serve)
    unreachable: int = 0  # replicas that did not answer the drain
    seconds: float = 0.0
    replicas: list = field(default_factory=list)


def stop(config: RouterConfig, app_name: str, grace_s: float | None) -> DrainReport | None:
    """Drain (unless ``grace_s`` is None: stop at once), then shut Serve
    down. Blocks; the drain is bounded by ``grace_s`` plus
    ``SHUTDOWN_MARGIN_S``. Serve's handles need an event loop in the
    throughput-optimized mode, so both run in one of their own."""
    return asyncio.run(_stop(config, app_name, grace_s))


async def _stop(config: RouterConfig, app_name: str, grace_s: float | None) -> DrainReport | None:
    report = None
    if grace_s is not None:
        try:
            report = await drain(config, app_name, grace_s)
        except Exception:  # a drain that fails must not keep the router from stopping
            log.warning("the drain failed; stopping now", exc_info=True)
    await serve.shutdown_async()
    return report


async def drain(config: RouterConfig, app_name: str, grace_s: float) -> DrainReport:
    """Refuse new turns everywhere, let the running ones finish for
    ``grace_s``, stop the rest, flush: every ingress and caller replica at
    once (an ingress replica's drain ends when its last response has)."""
    start = time.monotonic()
    timeout_s = grace_s + 2 * SHUTDOWN_MARGIN_S
    names = ["Ingress"] + (["ProviderCaller"] if config.deployments.upstream_calls == "caller" else [])
    answers = await asyncio.gather(*(
        serve.get_deployment_handle(name, app_name).broadcast("drain", grace_s).results_async(timeout_s=timeout_s, return_exceptions=True)
        for name in names
    ))
    report = DrainReport()
    for name, results in zip(names, answers):
        for result in results:
            if not isinstance(result, dict):
                log.warning("a %s replica did not answer the drain: %r", name, result)
                report.unreachable += 1
                continue
            report.replicas.append({"deployment": name, **result})
            report.in_flight += result.get("in_flight", 0)
            report.stopped += result.get("stopped", 0)
            report.left += result.get("left", 0)
    report.seconds = time.monotonic() - start
    return report


def serve_children() -> list[psutil.Process]:
    """The HAProxy processes under this one (Ray's workers spawn them)."""
    try:
        return [p for p in psutil.Process().children(recursive=True) if _name(p) == "haproxy"]
    except psutil.Error:
        return []


def end_leftovers(processes: list[psutil.Process]) -> list[int]:
    """End those of ``processes`` still running (TERM, then KILL); their PIDs."""
    alive = [p for p in processes if p.is_running()]
    for process in alive:
        _signal(process, process.terminate)
    _, still = psutil.wait_procs(alive, timeout=_LEFTOVER_TERM_S)
    for process in still:
        _signal(process, process.kill)
    psutil.wait_procs(still, timeout=_LEFTOVER_TERM_S)
    return [p.pid for p in alive]


def _name(process: psutil.Process) -> str:
    try:
        return process.name()
    except psutil.Error:
        return ""


def _signal(process: psutil.Process, send) -> None:
    try:
        send()
    except psutil.NoSuchProcess:
        pass
