"""``SlidingWindowLimiter``: at most N turns per key in any window of W seconds.

A sliding-window log: each key keeps the times of its admitted turns within
the last ``window_s`` seconds (default 60, for turns per minute), so the
limit is exact (no burst at a window boundary, unlike fixed windows; no
refill-rate approximation, unlike a token bucket) at a memory cost of at most
``limit`` floats per active key, which is small for turn-level limits.
Refused turns are not recorded. ``retry_after_s`` is when the oldest admitted
turn leaves the window.

Exact across ingress replicas when one instance is shared: the keystore
actor (``deployments.keystore``) holds it. The clock is injected (seconds,
monotonic); tests advance it by hand.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["Admission", "SlidingWindowLimiter", "RATE_WINDOW_S"]

RATE_WINDOW_S = 60.0


class Admission(NamedTuple):
    """``ok``: the turn may go ahead. ``retry_after_s``: 0 when ok, else the
    seconds until one more turn would be admitted."""

    ok: bool
    retry_after_s: float


MIN_RETRY_AFTER_S = 0.001


class SlidingWindowLimiter:
    def __init__(self, window_s: float = RATE_WINDOW_S, clock: Callable[[], float] = time.monotonic):
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self._window_s = window_s
        self._clock = clock
        self._admitted: dict[str, deque[float]] = {}
        self._last_sweep = clock()

    def admit(self, key_id: str, limit: int) -> Admission:
        """Admit one turn for ``key_id`` if fewer than ``limit`` were admitted
        in the last ``window_s`` seconds, and record it."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        now = self._clock()
        self._sweep(now)
        stamps = self._admitted.setdefault(key_id, deque())
        self._expire(stamps, now)
        if len(stamps) >= limit:
            # The limit may have been lowered: the turn that must leave is
            # the one ``limit`` places from the newest.
            leaves_at = stamps[len(stamps) - limit] + self._window_s
            # Clamped both ways against float rounding: never past the window,
            # never a zero wait (a client would retry at once, and be refused).
            return Admission(False, min(self._window_s, max(MIN_RETRY_AFTER_S, leaves_at - now)))
        stamps.append(now)
        return Admission(True, 0.0)

    def in_window(self, key_id: str) -> int:
        """Turns admitted for ``key_id`` in the current window."""
        stamps = self._admitted.get(key_id)
        if not stamps:
            return 0
        self._expire(stamps, self._clock())
        return len(stamps)

    def _expire(self, stamps: deque[float], now: float) -> None:
        horizon = now - self._window_s
        while stamps and stamps[0] <= horizon:
            stamps.popleft()

    def _sweep(self, now: float) -> None:
        # Forget idle keys once per window, so memory follows active keys.
        if now - self._last_sweep < self._window_s:
            return
        self._last_sweep = now
        for key_id in [k for k, stamps in self._admitted.items() if not stamps or stamps[-1] <= now - self._window_s]:
            del self._admitted[key_id]
