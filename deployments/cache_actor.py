"""The ``ResponseCacheActor``: one named, detached Ray actor that holds the
response cache, shared by every ingress replica.

A thin shell over ``router.response_cache.ResponseCache``, bounded by the
config's ``cache`` block (entries, bytes, TTL). One ``get`` per cacheable
turn; ``put`` is fire-and-forget after a turn completes. A restarted actor
starts empty.
"""

from __future__ import annotations

import ray

from router.config import RouterConfig
from router.response_cache import CacheConfig, CachedTurn, ResponseCache

__all__ = ["ResponseCacheActor", "CACHE_ACTOR_NAME", "get_or_create_cache_actor"]

CACHE_ACTOR_NAME = "nemo-response-cache"


class ResponseCacheActor:
    def __init__(self, config: CacheConfig):
        self._cache = ResponseCache.from_config(config)

    def get(self, key: str) -> CachedTurn | None:
        return self._cache.get(key)

    def put(self, key: str, entry: CachedTurn) -> bool:
        return self._cache.put(key, entry)

    def delete(self, key: str) -> bool:
        return self._cache.delete(key)

    def clear(self) -> None:
        self._cache.clear()

    def stats(self) -> dict[str, int]:
        return self._cache.stats()

    def ping(self) -> bool:
        return True


def get_or_create_cache_actor(config: RouterConfig) -> "ray.actor.ActorHandle":
    """The cache for this cluster: created once (sized by ``config.cache``),
    found by name afterwards (an existing actor keeps its first sizes)."""
    return (
        ray.remote(ResponseCacheActor)
        .options(
            name=CACHE_ACTOR_NAME,
            namespace=config.deployments.tracker_namespace,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            max_restarts=-1,
        )
        .remote(config.cache)
    )
