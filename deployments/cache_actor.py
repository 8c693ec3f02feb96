"""The ``ResponseCacheActor``: one named, detached Ray actor per router
(``<tracker_name>-cache``) that holds the response cache, shared by every
ingress replica.

A thin shell over ``router.response_cache.ResponseCache``, bounded by the
config's ``cache`` block (entries, bytes, TTL). One ``get`` per cacheable
turn; ``put`` is fire-and-forget after a turn completes. A restarted actor
starts empty, and so does one a redeploy gives another ``cache`` block.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import ray

from router.config import RouterConfig
from router.response_cache import CacheConfig, CachedTurn, ResponseCache
from nemo_turnlog import TurnRecord

from router.rollout import ActorNames
from deployments.named_actor import configured_actor

__all__ = ["ResponseCacheActor", "cache_actor_name", "get_or_create_cache_actor", "cache_hit_record"]


class ResponseCacheActor:
    def __init__(self, config: CacheConfig):
        self._config = config
        self._cache = ResponseCache.from_config(config)

    def reconfigure(self, config: CacheConfig) -> None:
        """A redeploy: a changed ``cache`` block starts an empty cache."""
        if config != self._config:
            self._config = config
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


def cache_actor_name(config: RouterConfig) -> str:
    return ActorNames.of(config).cache


def get_or_create_cache_actor(config: RouterConfig) -> "ray.actor.ActorHandle":
    """The router's cache: created once (sized by ``config.cache``), found by
    name afterwards and reconfigured (``configured_actor``)."""
    return configured_actor(ResponseCacheActor, cache_actor_name(config), config.deployments.tracker_namespace, config.cache,
                            resources=config.deployments.actor_resources)


def cache_hit_record(
    entry: CachedTurn, chat, request_id: str, received_at: float, api_key_id: str | None, tags, conversation_id: str | None = None
) -> TurnRecord:
    """The turn-log record of a turn answered from the cache (no attempts, no
    cost; no turn index: the tracker, which counts turns, is not asked)."""
    usage = entry.usage or {}
    return TurnRecord(
        request_id=request_id,
        timestamp=datetime.fromtimestamp(received_at, tz=timezone.utc),
        model_group=chat.model,
        endpoint=entry.endpoint,
        provider=entry.provider,
        model=entry.completion.get("model"),
        streamed=chat.stream,
        status="ok",
        http_status=200,
        error_type=None,
        ttft_s=time.time() - received_at,
        total_s=time.time() - received_at,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        total_tokens=usage.get("total_tokens"),
        api_key_id=api_key_id,
        tags=list(tags),
        cost_usd=0.0,
        cache_hit=True,
        conversation_id=conversation_id,
    )
