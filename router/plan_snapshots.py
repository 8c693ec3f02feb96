"""Which snapshot plans an ingress replica should refresh, and when.

With ``deployments.planning: snapshot`` an ingress replica serves each turn
from the tracker's latest plan for that kind of turn and refreshes the plans
on a timer of its own, every ``interval_s``, instead of when a turn finds its
plan old. A refresh started by a turn lands in that turn's busiest
milliseconds (its dispatch), in the same event loop and on the same two
cores, and measured here it cost the turn about as much as the tracker call
it replaced (``benchmarks/serve_floor.py``; README "Performance").

A kind of turn stays on the timer while turns of that kind keep coming:
once none has been planned for ``idle_after_s`` it is dropped, so an idle
router makes no tracker calls at all, and its next turn asks the tracker
directly, as the first one did.
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["SnapshotSchedule"]


class SnapshotSchedule:
    """Last use and last refresh of each kind of turn (``key``), in seconds
    of one monotonic clock that the caller passes in."""

    __slots__ = ("interval_s", "idle_after_s", "_used_s", "_fetched_s")

    def __init__(self, interval_s: float, idle_after_s: float | None = None):
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.interval_s = interval_s
        # Long enough that a kind of turn seen a few times a second stays
        # warm; short enough that an idle router goes quiet quickly.
        self.idle_after_s = idle_after_s if idle_after_s is not None else max(2.0, 40 * interval_s)
        self._used_s: dict[Hashable, float] = {}
        self._fetched_s: dict[Hashable, float] = {}

    def warm(self, key: Hashable, now_s: float) -> bool:
        """Whether this kind's snapshot is being kept fresh: it has one, and
        a turn of its kind was planned within ``idle_after_s``."""
        used_s = self._used_s.get(key)
        return used_s is not None and key in self._fetched_s and now_s - used_s < self.idle_after_s

    def used(self, key: Hashable, now_s: float) -> None:
        """A turn of this kind was just planned from its snapshot."""
        self._used_s[key] = now_s

    def fetched(self, key: Hashable, now_s: float) -> None:
        """A fresh plan of this kind just came from the tracker."""
        self._fetched_s[key] = now_s
        self._used_s.setdefault(key, now_s)

    def due(self, now_s: float) -> list[Hashable]:
        """The kinds to refresh now: in use, and at least one interval old.
        Kinds idle for ``idle_after_s`` leave the schedule."""
        for key in [k for k, used_s in self._used_s.items() if now_s - used_s >= self.idle_after_s]:
            del self._used_s[key]
        return [k for k in self._used_s if now_s - self._fetched_s.get(k, float("-inf")) >= self.interval_s]

    @property
    def active(self) -> bool:
        """Whether any kind of turn is still on the timer."""
        return bool(self._used_s)
