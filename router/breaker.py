"""A circuit breaker per endpoint: ejection on failure, after Envoy's outlier
detection.

States::

    closed ──(N consecutive failures, or error rate >= r over the window
    │          with >= min_requests attempts)──▶ open
    open ──(cooldown elapsed)──▶ half_open: one probe turn may go through
    half_open ──(probe succeeds)──▶ closed
    half_open ──(probe fails)──▶ open again, with a doubled cooldown

Only outcomes whose kind ``counts_against_health`` count as failures (connect
errors, timeouts, 5xx, 429, broken streams); ``OK`` counts as a success;
``CANCELLED`` and ``REQUEST_REJECTED`` say nothing about the endpoint and are
ignored. A failure carrying ``retry_after_s`` (a 429 or 503 with
``Retry-After``) holds the endpoint out at least that long, whatever the
counters say, and it then comes back through a single probe like any other
opening.

The cooldown is ``cooldown_s * 2 ** (ejections - 1)``, capped at
``max_cooldown_s``; the ejection count starts over once the endpoint has
stayed closed for ``max_cooldown_s``. Outcomes that arrive while open belong
to turns sent before the opening (or forced there because every endpoint was
open) and are ignored; the first outcome after the cooldown decides the
probe. The breaker only answers "may a turn go here now"; never ejecting
every endpoint of a group is the planner's rule (``router.routing_state``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from enum import Enum

from router.config import BreakerConfig
from router.outcome import OutcomeKind

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """One endpoint's breaker. Times in seconds from ``clock``.

    Args:
        config: Thresholds and cooldowns (``BreakerConfig``).
        clock: Monotonic time source (default ``time.monotonic``).
        probe_timeout_s: How long a half-open probe may stay unanswered
            before another one is allowed (default 130: a turn's default
            ``total_s`` plus slack), so a lost report cannot wedge the breaker.
    """

    def __init__(
        self,
        config: BreakerConfig,
        clock: Callable[[], float] = time.monotonic,
        *,
        probe_timeout_s: float = 130.0,
    ):
        self._config = config
        self._clock = clock
        self._probe_timeout_s = probe_timeout_s
        self._window: deque[tuple[float, bool]] = deque()  # (time, failed)
        self._window_failures = 0
        self.consecutive_failures = 0
        self.ejections = 0
        self._open_until_s: float | None = None  # None: closed
        self._probe_started_s: float | None = None
        self._closed_since_s = clock()

    # -- reading --------------------------------------------------------

    def state(self) -> BreakerState:
        if self._open_until_s is None:
            return BreakerState.CLOSED
        if self._clock() < self._open_until_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def available(self) -> bool:
        """May a turn be sent here now: closed, or half-open with the probe free."""
        state = self.state()
        if state is BreakerState.HALF_OPEN:
            return not self._probe_busy()
        return state is BreakerState.CLOSED

    @property
    def open_until_s(self) -> float | None:
        """When the current opening ends (half-open from then on); None if closed."""
        return self._open_until_s

    @property
    def config(self) -> BreakerConfig:
        return self._config

    @property
    def probe_timeout_s(self) -> float:
        return self._probe_timeout_s

    def retune(self, config: BreakerConfig, probe_timeout_s: float) -> None:
        """Judge by ``config`` from now on (a redeploy), keeping the state:
        an open breaker stays open until its cooldown ends, and the failures
        counted so far count towards the new thresholds."""
        self._config = config
        self._probe_timeout_s = probe_timeout_s

    # -- events ---------------------------------------------------------

    def started(self) -> None:
        """A turn was sent here; in half-open, it is the probe."""
        if self.state() is BreakerState.HALF_OPEN and not self._probe_busy():
            self._probe_started_s = self._clock()

    def observe(self, kind: OutcomeKind, retry_after_s: float | None = None) -> None:
        """Take one finished attempt's outcome."""
        if kind is not OutcomeKind.OK and not kind.counts_against_health:
            if self.state() is BreakerState.HALF_OPEN:
                self._probe_started_s = None  # the probe told nothing: allow another
            return
        failed = kind.counts_against_health
        hold_s = retry_after_s if failed and retry_after_s and retry_after_s > 0 else 0.0
        state = self.state()
        if state is BreakerState.OPEN:
            if hold_s:
                self._hold(hold_s)
        elif state is BreakerState.HALF_OPEN:
            if failed:
                self._open(hold_s)
            else:
                self._close()
        else:
            self._record(failed)
            if failed and self._tripped():
                self._open(hold_s)
            elif hold_s:
                self._hold(hold_s)

    # -- internals ------------------------------------------------------

    def _probe_busy(self) -> bool:
        started = self._probe_started_s
        return started is not None and self._clock() - started < self._probe_timeout_s

    def _record(self, failed: bool) -> None:
        now = self._clock()
        self._window.append((now, failed))
        self._window_failures += failed
        while self._window and self._window[0][0] <= now - self._config.window_s:
            _, old_failed = self._window.popleft()
            self._window_failures -= old_failed
        self.consecutive_failures = self.consecutive_failures + 1 if failed else 0

    def _tripped(self) -> bool:
        config = self._config
        if self.consecutive_failures >= config.consecutive_failures:
            return True
        requests = len(self._window)
        return requests >= config.min_requests and self._window_failures >= config.error_rate * requests

    def _open(self, hold_s: float = 0.0) -> None:
        now = self._clock()
        if self._open_until_s is None and now - self._closed_since_s >= self._config.max_cooldown_s:
            self.ejections = 0  # closed long enough: start the growth over
        self.ejections += 1
        cooldown_s = min(self._config.cooldown_s * 2 ** (self.ejections - 1), self._config.max_cooldown_s)
        self._open_until_s = now + max(cooldown_s, hold_s)
        self._reset_counts()

    def _hold(self, hold_s: float) -> None:
        """Retry-After: out for at least ``hold_s``, without counting an ejection."""
        until_s = self._clock() + hold_s
        self._open_until_s = until_s if self._open_until_s is None else max(self._open_until_s, until_s)
        self._reset_counts()

    def _close(self) -> None:
        self._open_until_s = None
        self._closed_since_s = self._clock()
        self._reset_counts()

    def _reset_counts(self) -> None:
        self._window.clear()
        self._window_failures = 0
        self.consecutive_failures = 0
        self._probe_started_s = None
