"""The ingress's side of the metrics: the merged metrics from the hub actor
(``deployments.metrics_hub``), the JSON window a client asks for, and the
routing gauges from the tracker that the Prometheus page adds
(``deployments.ingress``)."""

from __future__ import annotations

import asyncio
import logging

import ray
from ray.exceptions import RayError
from starlette.exceptions import HTTPException as StarletteHTTPException

from router.config import RouterConfig
from router.errors import InvalidRequest
from router.rollout import ActorNames
from nemo_turnlog.prometheus import upstream_states

from deployments.planner import TRACKER_TIMEOUT_S

__all__ = ["MetricsClient"]

log = logging.getLogger(__name__)


class MetricsClient:
    def __init__(self, config: RouterConfig, trackers):
        self._metrics = config.metrics
        self._namespace = config.deployments.tracker_namespace
        self._hub_name = ActorNames.of(config).metrics_hub
        self._trackers = trackers  # deployments.tracker_shards.TrackerShards

    async def snapshot(self, window: str | None) -> dict:
        """``/v1/metrics``: per group and endpoint over ``window`` seconds
        (a query parameter; at most the configured window)."""
        try:
            window_s = float(window) if window else None
        except ValueError:
            raise InvalidRequest("window_s must be a number of seconds", param="window_s") from None
        if window_s is not None and not 0 < window_s <= self._metrics.window_s:
            raise InvalidRequest(f"window_s must be in (0, {self._metrics.window_s}]", param="window_s")
        return await self.hub().snapshot_json.remote(window_s)

    async def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """``/metrics``: the page and its content type, by ``Accept``."""
        hub = self.hub()
        return await hub.exposition.remote(accept, await self._upstream_states())

    async def _upstream_states(self) -> list:
        """The routing gauges' rows; none if the tracker does not answer."""
        snapshot = await self.routing_snapshot()
        try:
            return upstream_states(snapshot or {})
        except ValueError:
            log.warning("no routing state for /metrics: the tracker's snapshot did not read", exc_info=True)
            return []

    async def routing_snapshot(self) -> dict | None:
        """The tracker's snapshot (``/v1/routing``); None (and a warning) if
        it does not answer in time: the turn metrics are still worth serving."""
        try:
            async with asyncio.timeout(TRACKER_TIMEOUT_S):
                return await self._trackers.snapshot()
        except (TimeoutError, RayError, ValueError):
            log.warning("no routing state for the metrics: the tracker did not answer", exc_info=True)
            return None

    def hub(self):
        """The hub's handle; 404 when metrics are off."""
        if not self._metrics.enabled:
            raise StarletteHTTPException(404, "metrics are disabled in this router's configuration")
        return ray.get_actor(self._hub_name, namespace=self._namespace)
