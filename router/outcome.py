"""What one attempt at one endpoint came to: the typed observation that
routing state consumes (``observe``), and the turn log records.

The kind of a failed attempt is its error's ``kind``
(``router.outcome_kind``), classified once where the reply was parsed.
"""

from __future__ import annotations

from dataclasses import dataclass

from router.outcome_kind import OutcomeKind

__all__ = ["OutcomeKind", "AttemptOutcome", "AttemptStarted", "LeaseEvent", "LeaseKey", "TurnClosed"]


LeaseKey = tuple[str, int]
"""``(turn_id, attempt_index)``: one attempt's slot in flight at its endpoint
(``router.pending``). Attempt 0 is the plan's first endpoint."""


@dataclass(slots=True, frozen=True)
class AttemptOutcome:
    """One attempt's result. Times in seconds, measured from the attempt's
    own start (not the turn's, so a fallback's TTFT does not include the
    attempts before it); ``ttft_s`` is None when no content token arrived.
    ``retry_after_s`` comes from a 429/503 reply. ``lease``: the slot in
    flight this outcome releases (None: none was held, e.g. a simulation).
    ``cached_tokens``: prompt tokens the provider reports as cached."""

    endpoint: str
    kind: OutcomeKind
    duration_s: float
    ttft_s: float | None = None
    http_status: int | None = None
    retry_after_s: float | None = None
    lease: LeaseKey | None = None
    # Prompt tokens the provider served from its prefix cache (None: not
    # reported): tells warm samples from cold ones (``EndpointState.warm_gain_s``).
    cached_tokens: int | None = None


@dataclass(slots=True, frozen=True)
class AttemptStarted:
    """An attempt the plan did not count in flight went out to ``endpoint``
    (a fallback, a hedge, or any attempt of a snapshot or local plan): sent
    ahead of its outcome on the caller's ordered channel."""

    endpoint: str
    lease: LeaseKey


@dataclass(slots=True, frozen=True)
class TurnClosed:
    """The ingress is done with a turn that did not end normally (the client
    left, the dispatch failed, the caller died): every lease of the turn still
    held is released, and later starts of it are ignored."""

    turn_id: str


LeaseEvent = AttemptStarted | AttemptOutcome | TurnClosed
