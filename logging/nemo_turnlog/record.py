"""The turn record: what the gateway remembers about one conversational turn.

One ``TurnRecord`` per turn (one client request, however many chunks it
streamed and however many upstream attempts it took). Records are plain
data, built once when the turn ends and never mutated afterwards; the
writer turns batches of them into Arrow tables (``schema.records_to_table``).

To add a field (``cost_usd``, ``cache_hit``, ``gateway_overhead_s``, ...):
give it a default here so existing callers keep working, and add a column of
the same name to ``schema.TURN_LOG_SCHEMA``. Columns are filled by name, so
nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["AttemptRecord", "TurnRecord"]


@dataclass(slots=True)
class AttemptRecord:
    """One upstream attempt within a turn.

    ``outcome`` is the routing outcome kind (``"ok"``, ``"upstream_5xx"``,
    ``"timeout"``, ...); ``duration_s`` is wall time from sending the request
    to the attempt's end, in seconds; ``http_status`` is the upstream's status
    code, or None when no response arrived (connect failure, timeout).
    """

    endpoint: str
    outcome: str
    duration_s: float
    http_status: int | None = None


@dataclass(slots=True)
class TurnRecord:
    """One conversational turn, as written to the turn log.

    Times are in seconds; ``timestamp`` is the turn's start as a tz-aware UTC
    datetime (a naive one is taken to be UTC). ``endpoint``, ``provider`` and
    ``model`` name what finally served the turn and are None when nothing did.
    ``status`` is ``"ok"``, ``"error"`` or ``"cancelled"``; ``http_status`` is
    what the client got. ``ttft_s`` is None when no token arrived.
    ``attempts`` lists every upstream attempt in order; ``fallback_count`` is
    how many of them were fallbacks (attempts after the first).
    """

    request_id: str
    timestamp: datetime
    model_group: str
    endpoint: str | None
    provider: str | None
    model: str | None
    streamed: bool
    status: str
    http_status: int
    error_type: str | None
    ttft_s: float | None
    total_s: float
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    attempts: list[AttemptRecord] = field(default_factory=list)
    fallback_count: int = 0
    api_key_id: str | None = None
    tags: list[str] = field(default_factory=list)
    cost_usd: float | None = None
    cost_estimated: bool = False
    gateway_overhead_s: float | None = None
    cache_hit: bool = False
    messages_json: str | None = None  # only when turn_log.store_messages is on
    hedged: bool = False  # a second endpoint raced the first for the first token
    # What a provider adapter dropped or changed in the request (e.g. a
    # parameter Anthropic has no equivalent for), one note each.
    request_notes: list[str] = field(default_factory=list)
    # A failed turn's last upstream error, redacted (router.redact): the
    # operator's view of what the client was told only in the router's words.
    error_detail: str | None = None
    # Prompt tokens the provider served from its prompt cache (None: not reported).
    cached_tokens: int | None = None
    # The call this turn belongs to (router.conversation: header, metadata
    # or user) and its 1-based index there; None when the client named none.
    conversation_id: str | None = None
    conversation_turn: int | None = None
    # What cache-warm affinity did: "pinned", "no pin", "unhealthy: left X",
    # "slower by N ms: left X"; None when it did not apply.
    affinity: str | None = None
