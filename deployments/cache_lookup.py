"""The ingress's side of the response cache: the key a turn is cached
under, and the entry if there is one, from the cache actor
(``deployments.cache_actor``). A slow or absent cache actor is a miss,
never a failed turn."""

from __future__ import annotations

import asyncio
import logging

import ray
from ray.exceptions import RayError

from router.config import RouterConfig
from router.keys import KeyInfo
from router.response_cache import CachedTurn, cache_key, cache_requested

from deployments.cache_actor import cache_actor_name

__all__ = ["CACHE_TIMEOUT_S", "CacheLookup"]

log = logging.getLogger(__name__)

CACHE_TIMEOUT_S = 0.5  # a cache slower than this is a miss


class CacheLookup:
    def __init__(self, config: RouterConfig):
        self._settings = config.cache
        self._namespace = config.deployments.tracker_namespace
        self._name = cache_actor_name(config)
        self._actor = None

    async def __call__(self, raw: dict, tags: tuple[str, ...], key: KeyInfo) -> tuple[str | None, CachedTurn | None]:
        """The cache key (None: not cached) and the entry if there is one."""
        settings = self._settings
        if not settings.enabled or not cache_requested(raw):
            return None, None
        ck = cache_key(raw, tags=tags, namespace=key.key_id if settings.scope == "key" else None)
        try:
            if self._actor is None:
                self._actor = ray.get_actor(self._name, namespace=self._namespace)
            async with asyncio.timeout(CACHE_TIMEOUT_S):
                return ck, await self._actor.get.remote(ck)
        except (RayError, TimeoutError, ValueError):
            log.warning("response cache unavailable; treating as a miss", exc_info=True)
            self._actor = None
            return ck, None
