"""A per-profile prompt-prefix cache, as providers keep one per deployment.

OpenAI and Anthropic prompt caching and vLLM/SGLang prefix caching all
reuse the work done on a prompt prefix this deployment saw recently: a
conversation that resends its history to the same endpoint starts faster
and is billed less for the cached part. The simulator models that per
profile (one profile = one endpoint), at message granularity:

- a request's prefixes are its messages ``[:1]``, ``[:2]``, ... ``[:n]``,
  each identified by a running SHA-256 over the messages' canonical JSON,
  and sized in prompt tokens (the simulator's words);
- the request's cached tokens are the size of its longest prefix this
  profile served within ``prefix_cache_ttl_s`` (0 when none);
- every prefix of the request is then stored (refreshed) from now.

Bounded: at most ``max_prefixes`` entries, least recently stored evicted.
Providers' minimum cacheable lengths (OpenAI: 1024 tokens) are not modelled.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["PrefixCache", "message_prefixes"]

Prefix = tuple[str, int]
"""``(digest of messages[:k], prompt tokens of messages[:k])``."""


def message_prefixes(messages: Sequence[Any], tokens_of: Callable[[Any], int]) -> tuple[Prefix, ...]:
    """Every prefix of ``messages``, shortest first."""
    digest = hashlib.sha256()
    tokens = 0
    prefixes = []
    for message in messages:
        digest.update(json.dumps(message, sort_keys=True, separators=(",", ":")).encode())
        digest.update(b"\x00")
        tokens += tokens_of(message)
        prefixes.append((digest.copy().hexdigest(), tokens))
    return tuple(prefixes)


class PrefixCache:
    """Digest -> when it was last stored (seconds, the caller's clock)."""

    def __init__(self, max_prefixes: int = 100_000):
        self._stored: OrderedDict[str, float] = OrderedDict()
        self._max_prefixes = max_prefixes

    def __len__(self) -> int:
        return len(self._stored)

    def serve(self, prefixes: Sequence[Prefix], now_s: float, ttl_s: float) -> int:
        """Cached tokens for a request with ``prefixes``; stores them all."""
        cached = 0
        for digest, tokens in prefixes:
            stored_s = self._stored.get(digest)
            if stored_s is not None and now_s - stored_s < ttl_s:
                cached = tokens
        for digest, _ in prefixes:
            self._stored[digest] = now_s
            self._stored.move_to_end(digest)
        while len(self._stored) > self._max_prefixes:
            self._stored.popitem(last=False)
        return cached
