"""Active health checks: a small async Ray actor that probes each endpoint
whose group enables ``health_check``, and tells the tracker what it saw.

A probe lists the provider's models (``GET {base_url}/models`` for
OpenAI-compatible hosts, ``/v1/models`` on Anthropic, ``/v1beta/models`` on
Gemini), with the provider's own auth headers. Its result feeds the endpoint's circuit breaker only, through
``LatencyTracker.health_checked``: a dead endpoint is taken out of plans
before a caller's turn has to find out. The actor exists only when some
group enables checks, so the default costs nothing.

It holds no state, so a redeploy that changes what is checked replaces it:
its name carries a digest of its targets (``router.rollout.ActorNames``),
and the router's other probers are retired.
"""

from __future__ import annotations

import asyncio
import logging
import os

import httpx
import ray

from router.config import EndpointConfig, HealthCheckConfig, RouterConfig
from router.errors import UpstreamError
from router.providers import codec_for
from router.outcome import OutcomeKind
from router.rollout import ActorNames, probe_targets

from deployments.upstream import resolve_api_keys, translate
from deployments.tracker_shards import TrackerShards
from deployments.named_actor import named_actor, retire

__all__ = ["HealthProber", "start_health_prober", "probe_outcome"]

log = logging.getLogger(__name__)

MODELS_PATH = {"openai": "/models", "anthropic": "/v1/models", "gemini": "/v1beta/models"}


async def probe_outcome(client: httpx.AsyncClient, endpoint: EndpointConfig, check: HealthCheckConfig, api_key: str | None) -> tuple[OutcomeKind, float | None]:
    """One probe: the outcome kind, and Retry-After (s) if the host sent one."""
    codec = codec_for(endpoint.provider)
    url = endpoint.base_url.rstrip("/") + MODELS_PATH[endpoint.provider]
    try:
        response = await client.get(url, headers=codec.headers(api_key), timeout=check.timeout_s)
    except httpx.HTTPError as exc:
        return translate(exc, endpoint.name).kind, None
    if response.status_code < 400 or response.status_code in (401, 403, 404, 405):
        # Reachable and answering: auth or a missing /models route says
        # nothing about whether it can serve turns.
        return OutcomeKind.OK, None
    retry_after = response.headers.get("retry-after")
    error: UpstreamError = codec.error_from_status(response.status_code, response.content, retry_after, endpoint=endpoint.name)
    return error.kind, error.retry_after_s


class HealthProber:
    def __init__(self, config: RouterConfig):
        self._trackers = TrackerShards(config)  # each check goes to its endpoint's shard
        self._targets = list(probe_targets(config))
        self._api_keys = resolve_api_keys([e for e, _ in self._targets], os.environ)
        self._client: httpx.AsyncClient | None = None
        self._tasks: list[asyncio.Task] = []
        # Ray runs an async actor's __init__ on its event loop, also when it
        # restarts the actor (a crash, a lost node): the probes start here,
        # since nobody calls ``start`` again after a restart.
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # constructed outside an event loop: ``start`` starts them
            return
        self._start_probes()

    async def start(self) -> int:
        """Start one probe loop per endpoint (idempotent); returns how many."""
        return self._start_probes()

    def _start_probes(self) -> int:
        if not self._tasks:
            self._client = httpx.AsyncClient()
            self._tasks = [asyncio.create_task(self._loop(e, c)) for e, c in self._targets]
        return len(self._tasks)

    async def probing(self) -> int:
        """How many probe loops are running."""
        return sum(1 for task in self._tasks if not task.done())

    def pid(self) -> int:
        return os.getpid()

    async def _loop(self, endpoint: EndpointConfig, check: HealthCheckConfig) -> None:
        while True:
            kind, retry_after_s = await probe_outcome(self._client, endpoint, check, self._api_keys.get(endpoint.name))
            try:
                self._trackers.health_checked(endpoint.name, kind, retry_after_s)
            except Exception:  # the tracker may be restarting; the next probe reports again (found anew)
                self._trackers.forget(self._trackers.map.of_endpoint(endpoint.name))
                log.warning("could not report a health check of %s", endpoint.name, exc_info=True)
            await asyncio.sleep(check.interval_s)


def start_health_prober(config: RouterConfig) -> "ray.actor.ActorHandle | None":
    """Create (or find) the prober for this config's checks when any group
    enables them, and retire the router's probers for other checks."""
    names = ActorNames.of(config)
    namespace = config.deployments.tracker_namespace
    current = names.prober(config) if probe_targets(config) else None
    for name in ray.util.list_named_actors(all_namespaces=True):
        if name["namespace"] == namespace and _is_prober(name["name"], names.prober_prefix) and name["name"] != current:
            retire(name["name"], namespace)
    if current is None:
        return None
    prober = named_actor(HealthProber, current, namespace, config, resources=config.deployments.actor_resources)
    prober.start.remote()
    return prober


def _is_prober(name: str, prefix: str) -> bool:
    # "<tracker>-health" (before rollout) or "<tracker>-health-<digest>".
    return name == prefix or (name.startswith(prefix + "-") and len(name) == len(prefix) + 13)
