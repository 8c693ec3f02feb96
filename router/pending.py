"""Turns in flight at one endpoint, remembered by the time they started.

Outcomes reach the tracker in batches (every ~50 ms) and do not say which
plan they answer, so a finished attempt releases the *oldest* pending turn
of its endpoint. Counts stay exact; ages are approximate but self-cleaning:
a stale timestamp cannot outlive the turns that finish after it. A turn
whose outcome never arrives (a lost report) is dropped after ``max_age_s``,
since no attempt can outlive its deadline.
"""

from __future__ import annotations

from collections import deque

__all__ = ["PendingTurns"]


class PendingTurns:
    """A multiset of start times, in clock seconds, oldest first.

    Args:
        max_age_s: A pending turn older than this is forgotten by ``expire``
            (the group's ``timeouts.total_s`` plus slack for reporting).
    """

    __slots__ = ("_started", "_max_age_s")

    def __init__(self, max_age_s: float):
        self._started: deque[float] = deque()
        self._max_age_s = max_age_s

    def __len__(self) -> int:
        return len(self._started)

    def add(self, now_s: float) -> None:
        """A turn started now (the clock is monotonic, so the deque stays sorted)."""
        if self._started and now_s < self._started[-1]:
            now_s = self._started[-1]
        self._started.append(now_s)

    def release(self, now_s: float) -> float | None:
        """Forget the oldest turn; return how long it was in flight (seconds),
        or ``None`` if nothing was pending (the count never goes negative)."""
        if not self._started:
            return None
        return max(0.0, now_s - self._started.popleft())

    def expire(self, now_s: float) -> int:
        """Drop turns older than ``max_age_s``; return how many."""
        dropped = 0
        while self._started and now_s - self._started[0] > self._max_age_s:
            self._started.popleft()
            dropped += 1
        return dropped

    def oldest_age_s(self, now_s: float) -> float | None:
        """Age of the oldest turn still in flight, or ``None`` if none is."""
        return max(0.0, now_s - self._started[0]) if self._started else None
