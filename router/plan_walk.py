"""Walking one turn's plan: which endpoint to try next, and whether a failed
attempt lets the turn go on.

The tracker ranks (``routing_state``); the provider-caller walks. Each
endpoint of the plan is tried at most once, at most ``max_attempts`` times
in all, and never past the turn's deadline. A failure the endpoint may be
to blame for (``retryable``) moves on to the next endpoint. A request the
upstream rejected as faulty (a 4xx other than 429) is not retried on the
rest of the chain: the turn moves to the group declared for such faults
(``request_error_fallback``) when there is one, for at least one attempt,
and ends otherwise.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from router.config import EndpointConfig, TimeoutConfig
from router.errors import UpstreamError
from router.outcome_kind import OutcomeKind

__all__ = ["Candidate", "PlanWalk"]


@dataclass(slots=True, frozen=True)
class Candidate:
    """One attempt to make: the endpoint, its own group's timeouts, the
    turn's deadline (monotonic seconds) and the attempt's index in the turn
    (0: the plan's first endpoint, which the tracker already counts in flight)."""

    endpoint: EndpointConfig
    timeouts: TimeoutConfig
    deadline_s: float
    index: int


class PlanWalk:
    def __init__(
        self,
        endpoints: Sequence[str],
        max_attempts: int,
        deadline_s: float,
        catalog: Mapping[str, tuple[EndpointConfig, TimeoutConfig]],
        *,
        request_error_endpoints: Sequence[str] = (),
        clock: Callable[[], float],
    ):
        self._queue = deque(endpoints)
        self._attempts_left = max_attempts
        self._deadline_s = deadline_s
        self._catalog = catalog
        self._request_error_endpoints = tuple(request_error_endpoints)
        self._clock = clock
        self._index = 0
        self.moved_for_request_error = False

    def next(self) -> Candidate | None:
        """The next attempt, or None when the plan, the attempt bound or the
        turn's time is used up."""
        if self._attempts_left <= 0 or not self._queue or self._clock() >= self._deadline_s:
            return None
        endpoint, timeouts = self._catalog[self._queue.popleft()]
        self._attempts_left -= 1
        candidate = Candidate(endpoint, timeouts, self._deadline_s, self._index)
        self._index += 1
        return candidate

    def after_failure(self, error: UpstreamError) -> bool:
        """May the turn go on after ``error`` (an attempt that sent nothing)?
        Reads the error's one classification, ``error.kind``."""
        if error.retryable:
            return True
        if error.kind is OutcomeKind.REQUEST_REJECTED and not self.moved_for_request_error:
            self.moved_for_request_error = True
            if self._request_error_endpoints:
                self._queue = deque(self._request_error_endpoints)
                self._attempts_left = max(self._attempts_left, 1)
                return True
        return False
