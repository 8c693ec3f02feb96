"""Hedged first token: when to hedge, and how often one may.

The delay is decided where the routing signal lives (the tracker, at plan
time: ``hedge_delay_s``); the budget where the turns run (each caller
replica: ``HedgeBudget``), so a hedge never waits on a Ray call.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

from router.config import HedgeConfig

__all__ = ["HEDGE_WINDOW_TURNS", "HedgeBudget", "hedge_delay_s"]

HEDGE_WINDOW_TURNS = 100
"""The budget's window: ``max_share`` holds over any run of this many turns."""


def hedge_delay_s(config: HedgeConfig, recent_ttfts_s: Sequence[float]) -> float | None:
    """Seconds to wait for the first endpoint's first token before hedging:
    the fixed ``delay_s``, or the p95 of its recent TTFTs (None, i.e. no
    hedge, while it has none); never below ``min_delay_s``."""
    if config.delay_s is not None:
        return max(config.delay_s, config.min_delay_s)
    if not recent_ttfts_s:
        return None
    ordered = sorted(recent_ttfts_s)
    p95_s = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return max(p95_s, config.min_delay_s)


class HedgeBudget:
    """At most ``max_share`` of the last ``window_turns`` turns' worth of hedges.

    ``turn()`` counts every turn that could hedge (whether or not it does);
    ``try_hedge()`` takes a hedge if fewer than ``max_share x window_turns``
    were taken while the last ``window_turns`` turns started. A hedge is
    stamped with the turn count when it is taken, not tied to one turn, so
    turns running side by side (whose hedge timers fire in any order) are
    judged alike. A fresh replica has the whole allowance at once.
    """

    def __init__(self, max_share: float, window_turns: int = HEDGE_WINDOW_TURNS):
        self._allowed = max(1, int(max_share * window_turns))
        self._window_turns = window_turns
        self._turns = 0
        self._hedged_at: deque[int] = deque()  # the turn count at each hedge, oldest first

    def turn(self) -> None:
        self._turns += 1

    def can_hedge(self) -> bool:
        """Would ``try_hedge`` succeed now? (Spends nothing.)"""
        return self._turns > 0 and self.hedges_in_window < self._allowed

    def try_hedge(self) -> bool:
        """Spend one hedge, if the window allows it."""
        if not self.can_hedge():
            return False
        self._hedged_at.append(self._turns)
        return True

    @property
    def hedges_in_window(self) -> int:
        horizon = self._turns - self._window_turns
        while self._hedged_at and self._hedged_at[0] <= horizon:
            self._hedged_at.popleft()
        return len(self._hedged_at)
