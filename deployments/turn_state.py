"""One turn while it runs, and the record it leaves.

``TurnRequest`` is what the ingress hands a provider-caller; ``TurnHead`` and
``TurnFailure`` are the first item that comes back (``turn_runner``).
``TurnState`` is the caller's accounting while the turn runs: every attempt
(for the turn log and, as ``AttemptOutcome``s, for the tracker), what was
served, and the notes a provider adapter left; ``turn_record`` turns it into
the turn log's ``TurnRecord`` when the turn ends.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from router.catalog import TurnCost
from router.errors import UpstreamError
from router.outcome import AttemptOutcome, OutcomeKind
from router.plan_walk import Candidate
from router.response_cache import CachedTurn
from router.stream_watch import Usage
from turnlog import AttemptRecord, TurnRecord

__all__ = ["TurnHead", "TurnFailure", "TurnRequest", "TurnState", "turn_record"]


@dataclass(slots=True, frozen=True)
class TurnHead:
    """The stream has started on ``endpoint``: the ingress may send headers."""

    endpoint: str
    provider: str
    model: str
    caller_received_at: float  # wall clock, s: when the caller got the turn
    upstream_ttft_s: float  # from the served attempt's start to its first token


@dataclass(slots=True, frozen=True)
class TurnFailure:
    """No endpoint could start the turn: the OpenAI error to send, as is."""

    http_status: int
    error: dict[str, Any]


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
    reserved: bool = True  # the plan counted its first endpoint in flight (else: report TurnStarted)


@dataclass(slots=True)
class TurnState:
    """Accounting for one turn while it runs. Times: ``started_s`` on the
    runner's monotonic clock; wall-clock seconds where it says so."""

    request: TurnRequest
    started_s: float
    received_at: float = field(default_factory=time.time)  # wall clock, s
    attempts: list[AttemptRecord] = field(default_factory=list)
    outcomes: list[AttemptOutcome] = field(default_factory=list)
    endpoint: str | None = None
    ttft_s: float | None = None  # from the turn's start
    attempt_ttft_s: float | None = None  # from the served attempt's start
    usage: Usage | None = None
    model: str | None = None
    status: str = "error"
    http_status: int = 502
    error_type: str | None = None
    text: str = ""  # the reply the client got (for a cost estimate without usage)
    overhead_s: float | None = None  # router time before the first token left the caller
    cache_entry: CachedTurn | None = None  # the non-streaming reply, for the response cache
    errors: list[UpstreamError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # parameters a provider dropped or changed
    hedged: bool = False
    lost_race: set[int] = field(default_factory=set)  # attempt indexes cancelled by a hedge's winner
    losers: list[asyncio.Task] = field(default_factory=list)  # their tasks, settled before the record

    def record_attempt(
        self,
        candidate: Candidate,
        duration_s: float,
        kind: OutcomeKind,
        error: UpstreamError | None = None,
        *,
        ttft_s: float | None = None,
    ) -> None:
        """One attempt ended: for the turn record and for the tracker."""
        endpoint = candidate.endpoint.name
        http_status = getattr(error, "status_code", None) if error else (200 if kind is OutcomeKind.OK else None)
        if error is not None:
            self.errors.append(error)
        self.attempts.append(AttemptRecord(endpoint, kind.value, duration_s, http_status))
        self.outcomes.append(
            AttemptOutcome(
                endpoint,
                kind,
                duration_s,
                ttft_s=ttft_s,
                http_status=http_status,
                retry_after_s=getattr(error, "retry_after_s", None),
                fallback=candidate.index > 0,
            )
        )

    def router_time_s(self) -> float:
        """Time the router itself spent before the first token left the caller:
        from the ingress receiving the turn, less the upstream's own time (the
        failed attempts and the served attempt's time to first token). The
        trip back out through the ingress is not in it (the ingress's
        ``server-timing`` header shows that part)."""
        upstream_s = sum(a.duration_s for a in self.attempts) + (self.attempt_ttft_s or 0.0)
        return max(0.0, time.time() - self.request.received_at - upstream_s)


def turn_record(turn: TurnState, *, provider: str | None, cost: TurnCost | None, total_s: float) -> TurnRecord:
    """The turn log's record of a finished turn."""
    usage = turn.usage
    return TurnRecord(
        request_id=turn.request.request_id,
        timestamp=datetime.fromtimestamp(turn.request.received_at, tz=timezone.utc),
        model_group=turn.request.group,
        endpoint=turn.endpoint,
        provider=provider,
        model=turn.model,
        streamed=turn.request.stream,
        status=turn.status,
        http_status=turn.http_status,
        error_type=turn.error_type,
        ttft_s=turn.ttft_s,
        total_s=total_s,
        prompt_tokens=usage.prompt_tokens if usage else (cost.prompt_tokens if cost else None),
        completion_tokens=usage.completion_tokens if usage else (cost.completion_tokens if cost else None),
        total_tokens=usage.total_tokens if usage else None,
        attempts=turn.attempts,
        fallback_count=max(0, len(turn.attempts) - 1),
        api_key_id=turn.request.api_key_id,
        cost_usd=cost.usd if cost else None,
        cost_estimated=cost.estimated if cost else False,
        gateway_overhead_s=turn.overhead_s,
        tags=list(turn.request.tags),
        messages_json=json.dumps(turn.request.body.get("messages")) if turn.request.store_messages else None,
        hedged=turn.hedged,
        request_notes=list(turn.notes),
    )
