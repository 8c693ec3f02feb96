"""``TrackerShards``: a router's tracker shards (``deployments.tracker_shards``,
``router.shards``), as its replicas and actors use them.

    shards = TrackerShards(config)
    shards.handle(shards.map.of_group(group)).plan.remote(request)   # the planner
    shards.report(events)                  # a caller's or ingress's batch, split by shard
    shards.health_checked(endpoint, kind, retry_after_s)
    await shards.snapshot()                # every shard's endpoints, merged

Handles are found by name, lazily, and forgotten (``forget``) when a call
finds the actor gone, so the next use finds it again (Ray may have
restarted it on another node). With one shard, the default, a batch goes to
the one tracker as it is.

A batch's attempt events go to their endpoint's shard; a ``TurnClosed``
(the ingress closing a turn whose caller never reported) names no endpoint,
so it goes to every shard: the one that leased the turn releases it, the
others keep its id for a while and forget it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import RayError

from router.config import RouterConfig
from router.outcome import LeaseEvent, TurnClosed
from router.rollout import ActorNames
from router.shards import ShardMap

__all__ = ["TrackerShards"]


class TrackerShards:
    def __init__(self, config: RouterConfig, lookup: Callable[[str], Any] | None = None):
        options = config.deployments
        self.map = ShardMap(config, options.tracker_shards)
        names = ActorNames.of(config)
        self.names = [names.tracker_shard(shard) for shard in range(self.map.count)]
        self._lookup = lookup or (lambda name: ray.get_actor(name, namespace=options.tracker_namespace))
        self._handles: list[Any] = [None] * self.map.count

    @property
    def count(self) -> int:
        return self.map.count

    def handle(self, shard: int = 0):
        """Shard ``shard``'s handle (``ValueError`` if there is no such actor)."""
        handle = self._handles[shard]
        if handle is None:
            handle = self._handles[shard] = self._lookup(self.names[shard])
        return handle

    def forget(self, shard: int) -> None:
        self._handles[shard] = None

    def report(self, events: list[LeaseEvent]) -> None:
        """Fire-and-forget, as ``LatencyTracker.report``; each shard's events
        in the order they came."""
        if self.map.count == 1:
            self.handle(0).report.remote(events)
            return
        batches: list[list[LeaseEvent]] = [[] for _ in range(self.map.count)]
        for event in events:
            if type(event) is TurnClosed:
                for batch in batches:
                    batch.append(event)
            else:
                batches[self.map.of_endpoint(event.endpoint)].append(event)
        for shard, batch in enumerate(batches):
            if batch:
                self.handle(shard).report.remote(batch)

    def health_checked(self, endpoint: str, kind, retry_after_s: float | None = None) -> None:
        self.handle(self.map.of_endpoint(endpoint)).health_checked.remote(endpoint, kind, retry_after_s)

    async def snapshot(self) -> dict:
        """Every endpoint's routing row (``LatencyTracker.snapshot``), from
        every shard; raises what the first failing shard raised."""
        try:
            parts = await asyncio.gather(*(self.handle(shard).snapshot.remote() for shard in range(self.map.count)))
        except (RayError, ValueError):
            self._handles = [None] * self.map.count
            raise
        merged: dict = {}
        for part in parts:
            merged.update(part)
        return merged
