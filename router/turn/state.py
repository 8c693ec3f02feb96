"""One turn while it runs: what the ingress hands the caller, what comes
back first, and the turn's own accounting.

``TurnRequest`` is what the ingress hands a provider-caller; ``TurnHead`` and
``TurnFailure`` are the first item that comes back (``router.turn.runner``);
``TurnSettled`` comes just before ``[DONE]``, for turns charged to a key
(``router.turn.settle``).
``TurnState`` is the turn's accounting while it runs: every attempt (as an
``AttemptOutcome``, for the tracker and the turn log), what was served, and
the notes a provider adapter left. The shell turns a finished ``TurnState``
into the turn log's record (``deployments.turn_log``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from router.catalog import TurnCost
from router.errors import RouterStopping, TurnEndedByRouter, UpstreamError
from router.sse import encode_json
from router.outcome import AttemptOutcome, OutcomeKind
from router.plan_walk import Candidate
from router.response_cache import CachedTurn
from router.stream_watch import Usage
from router.turn.pace import ReadPacer
from router.turn.stop import TurnStop

__all__ = ["TurnHead", "TurnFailure", "TurnRequest", "TurnSettled", "TurnState", "ended_by_router", "new_turn_id"]


def new_turn_id() -> str:
    """A turn's own id: the key of its leases in flight (``router.pending``).
    Unlike ``request_id`` (the client may reuse one) it is never repeated."""
    return uuid.uuid4().hex


@dataclass(slots=True, frozen=True)
class TurnHead:
    """The stream has started on ``endpoint``: the ingress may send headers."""

    endpoint: str
    provider: str
    model: str
    caller_received_at: float  # wall clock, s: when the caller got the turn
    upstream_ttft_s: float  # from the served attempt's start to its first token
    # A non-streamed turn on a priced endpoint: what it cost (USD), for the
    # ``x-nemo-cost-usd`` header and, for a metered key, its charge.
    cost_usd: float | None = None


@dataclass(slots=True, frozen=True)
class TurnSettled:
    """In a streamed turn of a metered key that was priced, just before the
    piece ending with ``[DONE]``: what it cost (USD), for the ingress to
    charge the key. Never sent to the client."""

    cost_usd: float


@dataclass(slots=True, frozen=True)
class TurnFailure:
    """No endpoint could start the turn: the OpenAI error to send, as is."""

    http_status: int
    error: dict[str, Any]


@dataclass(slots=True, frozen=True)
class Resume:
    """Where a turn carried over from another caller picks up: the text the
    client already has and the chunk id it has seen (``router.continuation``)."""

    sent_text: str
    chunk_id: str | None


@dataclass(slots=True, frozen=True)
class TurnRequest:
    """What the ingress hands the caller for one turn."""

    request_id: str
    group: str
    endpoints: tuple[str, ...]
    max_attempts: int
    body: dict[str, Any]
    stream: bool
    include_usage: bool
    received_at: float = field(default_factory=time.time)  # wall clock, s
    api_key_id: str | None = None  # the key's name, never the key
    tags: tuple[str, ...] = ()  # the tags the turn asked for
    store_messages: bool = False  # copy the conversation into the turn log (off: privacy)
    cache_key: str | None = None  # fill the response cache under this key when the turn ends well
    hedge_after_s: float | None = None  # the plan's hedge delay (None: no hedge)
    request_error_endpoints: tuple[str, ...] = ()  # where a request the upstream rejects goes next
    reserved: bool = True  # the plan holds attempt 0's lease (else the caller reports AttemptStarted)
    turn_id: str = field(default_factory=new_turn_id)  # the key of the turn's leases
    resume: Resume | None = None  # carried over mid-stream from a caller that died
    notes: tuple[str, ...] = ()  # what the ingress changed in the request (dropped client fields)
    conversation_id: str | None = None  # the call this turn belongs to (``router.conversation``)
    conversation_turn: int | None = None  # its index there, 1-based (None: unknown)
    affinity: str | None = None  # what cache-warm affinity did (``router.affinity``)

    @property
    def choices(self) -> int:
        """Choices the client asked for (``n``, validated by the ingress; 1 when unset)."""
        n = self.body.get("n")
        return n if type(n) is int and n > 1 else 1


@dataclass(slots=True)
class TurnState:
    """Accounting for one turn while it runs. Times: ``started_s`` on the
    runner's monotonic clock; wall-clock seconds where it says so."""

    request: TurnRequest
    started_s: float
    received_at: float = field(default_factory=time.time)  # wall clock, s
    outcomes: list[AttemptOutcome] = field(default_factory=list)
    endpoint: str | None = None
    provider: str | None = None
    ttft_s: float | None = None  # from the turn's start
    attempt_ttft_s: float | None = None  # from the served attempt's start
    usage: Usage | None = None
    model: str | None = None
    status: str = "error"
    http_status: int = 502
    error_type: str | None = None
    error_detail: str | None = None  # the last upstream error, redacted: for the record, never the client
    text: str = ""  # the reply the client got (for a cost estimate without usage)
    overhead_s: float | None = None  # router time before the first token left the caller
    total_s: float | None = None  # set when the turn ends
    cost: TurnCost | None = None  # set when the turn ends, if priced
    cache_entry: CachedTurn | None = None  # the non-streaming reply, for the response cache
    errors: list[UpstreamError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # parameters a provider dropped or changed
    hedged: bool = False
    lost_race: set[int] = field(default_factory=set)  # attempt indexes cancelled by a hedge's winner
    losers: list[asyncio.Task] = field(default_factory=list)  # their tasks, settled before the record
    stop: TurnStop = field(default_factory=TurnStop)  # the runner's live-turn registry flips it
    pacer: ReadPacer | None = None  # a streamed turn's bound on what waits for its reader
    waiting_for_reader: bool = False  # the runner is paused on the pacer right now
    ended_by: TurnEndedByRouter | None = None  # the router ended it (stopping, or a client that reads nothing)

    def lease(self, candidate: Candidate) -> tuple[str, int]:
        return (self.request.turn_id, candidate.index)

    def record_attempt(
        self,
        candidate: Candidate,
        duration_s: float,
        kind: OutcomeKind,
        error: UpstreamError | None = None,
        *,
        ttft_s: float | None = None,
        cached_tokens: int | None = None,
    ) -> AttemptOutcome:
        """One attempt ended: kept for the turn record, returned for the tracker."""
        http_status = getattr(error, "status_code", None) if error else (200 if kind is OutcomeKind.OK else None)
        if error is not None:
            self.errors.append(error)
        outcome = AttemptOutcome(
            candidate.endpoint.name,
            kind,
            duration_s,
            ttft_s=ttft_s,
            http_status=http_status,
            retry_after_s=getattr(error, "retry_after_s", None),
            lease=self.lease(candidate),
            cached_tokens=cached_tokens,
        )
        self.outcomes.append(outcome)
        return outcome

    def router_time_s(self) -> float:
        """Time the router itself spent before the first token left the caller:
        from the ingress receiving the turn, less the upstream's own time (the
        failed attempts and the served attempt's time to first token). The
        trip back out through the ingress is not in it (the ingress's
        ``server-timing`` header shows that part)."""
        upstream_s = sum(o.duration_s for o in self.outcomes) + (self.attempt_ttft_s or 0.0)
        return max(0.0, time.time() - self.request.received_at - upstream_s)


def ended_by_router(turn: TurnState, *, started: bool):
    """How a turn the router ended (stopping, or a client that read
    nothing) ends for its client: a ``TurnFailure`` before its stream
    started, else the SSE error event (followed by ``[DONE]``). The record
    names the error (``RouterStopping``, ``ClientTooSlow``)."""
    error = turn.ended_by or RouterStopping("the router is stopping; retry the turn")
    turn.status, turn.error_type = "error", type(error).__name__
    if started:
        turn.http_status = 200
        return encode_json(error.to_openai())
    turn.http_status = error.http_status
    return TurnFailure(error.http_status, error.to_openai())
