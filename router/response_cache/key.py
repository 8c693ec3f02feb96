"""The cache key of a chat request: what must match for a stored answer to
be served again.

The key is the SHA-256 of the request body in canonical JSON (sorted keys,
whole-number floats written as integers, so ``1.0`` and ``1`` agree), with
the fields that cannot change the output removed, plus the requested tags
and a namespace (the API key's id when the cache is scoped per key).

Fields are dropped by a deny list rather than kept by an allow list: a
parameter the router does not know (a new OpenAI option, a provider's own)
then stays in the key, which costs a miss at worst and never serves an
answer to a different question.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from router.errors import InvalidRequest

__all__ = ["IGNORED_FIELDS", "ROUTER_FIELD_PREFIX", "KEY_VERSION", "cache_key", "cache_requested"]

IGNORED_FIELDS = frozenset({
    "stream",             # a cached turn replays either way
    "stream_options",
    "user",               # end-user id for abuse tracking
    "safety_identifier",
    "metadata",           # stored-completion labels
    "store",
    "service_tier",       # latency and price, not content
    "prompt_cache_key",   # a provider's prompt-cache routing hint
})
"""Request fields that do not change the completion."""

ROUTER_FIELD_PREFIX = "nemo_"
"""Every ``nemo_*`` field is the router's own (tags, cache switch): dropped."""

KEY_VERSION = 1
"""Bumped when the key's recipe changes, so old entries simply miss."""


def cache_key(body: Mapping[str, Any], *, tags: Iterable[str] = (), namespace: str | None = None) -> str:
    """The hex SHA-256 cache key of a chat-completions request body.

    ``tags``: the turn's requested tags (they choose endpoints, so they are
    part of the question). ``namespace``: e.g. the API key id under
    ``scope: key``; None for a cache shared by every key.
    """
    kept = {k: v for k, v in body.items() if k not in IGNORED_FIELDS and not k.startswith(ROUTER_FIELD_PREFIX)}
    payload = {"v": KEY_VERSION, "body": _canonical(kept), "tags": sorted(set(tags)), "ns": namespace}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_requested(body: Mapping[str, Any]) -> bool:
    """False when the request opts out with ``"nemo_cache": false`` (also
    sent as ``extra_body`` by the OpenAI client). Not a boolean: 400."""
    value = body.get("nemo_cache", True)
    if not isinstance(value, bool):
        raise InvalidRequest("invalid 'nemo_cache': expected a boolean", param="nemo_cache", code="invalid_value")
    return value


def _canonical(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value
