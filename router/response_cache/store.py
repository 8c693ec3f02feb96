"""``ResponseCache``: an in-memory LRU of cached turns, bounded three ways.

Bounds: ``max_entries`` entries, ``max_bytes`` bytes in all (each entry
counts its ``size_bytes``), ``max_entry_bytes`` for one entry (larger ones
are refused), and ``ttl_s`` seconds of life from when an entry was stored.
Least recently used entries go first when a bound is hit; an expired entry
is dropped when it is next looked up or reaches the LRU end. Defaults are
``CacheConfig``'s.

Plain and synchronous, clock injected (seconds, monotonic): one instance in
one Ray actor (``deployments.cache_actor``) is shared by every ingress
replica.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from router.response_cache.config import CacheConfig
from router.response_cache.entry import CachedTurn

__all__ = ["ResponseCache"]


@dataclass(slots=True)
class _Slot:
    entry: CachedTurn
    expires_at: float


class ResponseCache:
    def __init__(
        self,
        max_entries: int = 10_000,
        max_bytes: int = 64 << 20,
        ttl_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_entry_bytes: int | None = None,
    ):
        if max_entries < 1 or max_bytes < 1 or ttl_s <= 0:
            raise ValueError("max_entries, max_bytes and ttl_s must be positive")
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._max_entry_bytes = min(max_bytes, max_entry_bytes or max_bytes)
        self._ttl_s = ttl_s
        self._clock = clock
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self._bytes = 0
        self._counts = {"hits": 0, "misses": 0, "stores": 0, "refused": 0, "evictions": 0, "expirations": 0}

    @classmethod
    def from_config(cls, config: CacheConfig, clock: Callable[[], float] = time.monotonic) -> "ResponseCache":
        return cls(config.max_entries, config.max_bytes, config.ttl_s, clock, max_entry_bytes=config.max_entry_bytes)

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, key: str) -> CachedTurn | None:
        """The live entry for ``key`` (now the most recently used), or None."""
        slot = self._slots.get(key)
        if slot is not None and slot.expires_at <= self._clock():
            self._drop(key, "expirations")
            slot = None
        if slot is None:
            self._counts["misses"] += 1
            return None
        self._slots.move_to_end(key)
        self._counts["hits"] += 1
        return slot.entry

    def put(self, key: str, entry: CachedTurn) -> bool:
        """Store ``entry`` under ``key`` (replacing any), evicting as needed.
        False, storing nothing, when the entry alone exceeds ``max_entry_bytes``."""
        if entry.size_bytes > self._max_entry_bytes:
            self._counts["refused"] += 1
            return False
        if key in self._slots:
            self._drop(key, None)
        self._slots[key] = _Slot(entry, self._clock() + self._ttl_s)
        self._bytes += entry.size_bytes
        self._counts["stores"] += 1
        self._evict()
        return True

    def delete(self, key: str) -> bool:
        if key not in self._slots:
            return False
        self._drop(key, None)
        return True

    def clear(self) -> None:
        self._slots.clear()
        self._bytes = 0

    def stats(self) -> dict[str, int]:
        return {**self._counts, "entries": len(self._slots), "bytes": self._bytes}

    def _evict(self) -> None:
        now = self._clock()
        while self._slots:
            key, slot = next(iter(self._slots.items()))
            if slot.expires_at <= now:
                self._drop(key, "expirations")
            elif len(self._slots) > self._max_entries or self._bytes > self._max_bytes:
                self._drop(key, "evictions")
            else:
                return

    def _drop(self, key: str, counter: str | None) -> None:
        slot = self._slots.pop(key)
        self._bytes -= slot.entry.size_bytes
        if counter:
            self._counts[counter] += 1
