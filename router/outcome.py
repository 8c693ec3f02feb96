"""What one attempt at one endpoint came to: the typed observation that
routing state consumes (``observe``), and the turn log records.

Local failures (could not connect, timed out) are kept apart from upstream
ones (5xx, 429), and request faults (other 4xx) from both, since only the
first two say anything about an endpoint's health.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from router.errors import (
    UpstreamCannotServe,
    UpstreamConnectError,
    UpstreamDisconnected,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)

__all__ = ["OutcomeKind", "AttemptOutcome", "TurnStarted", "outcome_kind_of"]


class OutcomeKind(str, Enum):
    OK = "ok"
    CONNECT_ERROR = "connect_error"
    TIMEOUT = "timeout"
    UPSTREAM_ERROR = "upstream_5xx"
    RATE_LIMITED = "rate_limited"
    REQUEST_REJECTED = "request_rejected"
    PROTOCOL_ERROR = "protocol_error"
    DISCONNECTED = "disconnected"
    CANCELLED = "cancelled"

    @property
    def counts_against_health(self) -> bool:
        return self not in (OutcomeKind.OK, OutcomeKind.REQUEST_REJECTED, OutcomeKind.CANCELLED)


def outcome_kind_of(error: UpstreamError) -> OutcomeKind:
    if isinstance(error, UpstreamStatusError):
        if error.status_code == 429:
            return OutcomeKind.RATE_LIMITED
        return OutcomeKind.UPSTREAM_ERROR if error.status_code >= 500 else OutcomeKind.REQUEST_REJECTED
    if isinstance(error, UpstreamCannotServe):
        return OutcomeKind.REQUEST_REJECTED
    if isinstance(error, UpstreamConnectError):
        return OutcomeKind.CONNECT_ERROR
    if isinstance(error, UpstreamTimeout):
        return OutcomeKind.TIMEOUT
    if isinstance(error, UpstreamProtocolError):
        return OutcomeKind.PROTOCOL_ERROR
    if isinstance(error, UpstreamDisconnected):
        return OutcomeKind.DISCONNECTED
    return OutcomeKind.UPSTREAM_ERROR


@dataclass(slots=True, frozen=True)
class AttemptOutcome:
    """One attempt's result. Times in seconds, measured from the attempt's
    own start (not the turn's, so a fallback's TTFT does not include the
    attempts before it); ``ttft_s`` is None when no content token arrived.
    ``retry_after_s`` comes from a 429/503 reply."""

    endpoint: str
    kind: OutcomeKind
    duration_s: float
    ttft_s: float | None = None
    http_status: int | None = None
    retry_after_s: float | None = None
    fallback: bool = False  # not the plan's first endpoint


@dataclass(slots=True, frozen=True)
class TurnStarted:
    """A turn went to ``endpoint`` on a plan that did not count it in flight
    (a snapshot plan): sent ahead of the turn's outcomes, on the same
    ordered channel, so the tracker never sees the release before the start."""

    endpoint: str
