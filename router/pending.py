"""Turns in flight at one endpoint, held by lease and remembered by the time
they started.

Each attempt in flight holds one lease, keyed ``(turn_id, attempt_index)``
(``router.outcome.LeaseKey``): the tracker's plan takes attempt 0's, a
caller's ``AttemptStarted`` takes any other's, and whichever release comes
first (the attempt's outcome, or the ingress closing the turn) gives it back;
a second release of the same key is a no-op. A turn whose releases never
arrive (a lost report, a process gone) is dropped after ``max_age_s``, since
no attempt can outlive its deadline.
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["PendingTurns"]


class PendingTurns:
    """Lease key -> start time (clock seconds), oldest first.

    The clock is monotonic, so insertion order is start order and the
    oldest lease is the first key.

    Args:
        max_age_s: A lease older than this is forgotten by ``expire``
            (the group's ``timeouts.total_s`` plus slack for reporting).
    """

    __slots__ = ("_started", "_max_age_s")

    def __init__(self, max_age_s: float):
        self._started: dict[Hashable, float] = {}
        self._max_age_s = max_age_s

    def __len__(self) -> int:
        return len(self._started)

    def add(self, key: Hashable, now_s: float) -> bool:
        """Hold ``key`` from now; False (and nothing changes) if it is held already."""
        if key in self._started:
            return False
        self._started[key] = now_s
        return True

    def release(self, key: Hashable, now_s: float) -> float | None:
        """Give ``key`` back; return how long it was held (seconds), or
        ``None`` if it was not held (released already, expired, never held)."""
        started_s = self._started.pop(key, None)
        return None if started_s is None else max(0.0, now_s - started_s)

    @property
    def max_age_s(self) -> float:
        return self._max_age_s

    def retune(self, max_age_s: float) -> None:
        """Forget leases older than ``max_age_s`` from now on (a redeploy
        that changed the group's ``total_s``); the leases held stay held."""
        self._max_age_s = max_age_s

    def expire(self, now_s: float) -> list[Hashable]:
        """Drop leases older than ``max_age_s``; return their keys."""
        expired = []
        for key, started_s in self._started.items():
            if now_s - started_s <= self._max_age_s:
                break
            expired.append(key)
        for key in expired:
            del self._started[key]
        return expired

    def oldest_age_s(self, now_s: float) -> float | None:
        """Age of the oldest lease still held, or ``None`` if none is."""
        for started_s in self._started.values():
            return max(0.0, now_s - started_s)
        return None
