"""The response cache: identical requests answered from memory.

    key = cache_key(raw_body, tags=tags, namespace=key_id)   # if cache_requested(raw_body)
    entry = cache.get(key)                                   # hit: replay_sse / replay_completion
    ...
    entry = recorder.finish(usage=...) or entry_from_completion(completion)
    if entry: cache.put(key, entry)

``ResponseCache`` is a plain class; one Ray actor holds it so every ingress
replica shares it (``deployments.cache_actor``). See ``key`` for what the
key covers and ``entry`` for what is cached.
"""

from router.response_cache.config import CacheConfig
from router.response_cache.entry import (
    CACHEABLE_FINISH_REASONS,
    CachedTurn,
    TurnRecorder,
    entry_from_chunks,
    entry_from_completion,
    replay_completion,
    replay_sse,
)
from router.response_cache.key import IGNORED_FIELDS, cache_key, cache_requested
from router.response_cache.store import ResponseCache

__all__ = [
    "CacheConfig",
    "CACHEABLE_FINISH_REASONS",
    "CachedTurn",
    "TurnRecorder",
    "entry_from_chunks",
    "entry_from_completion",
    "replay_sse",
    "replay_completion",
    "IGNORED_FIELDS",
    "cache_key",
    "cache_requested",
    "ResponseCache",
]
