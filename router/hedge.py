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
    """At most ``max_share`` of the last ``window_turns`` turns hedged.

    ``turn()`` counts every turn that could hedge (whether or not it does);
    ``try_hedge()`` takes a hedge if the window has room. Hedges are counted
    against the turns they belong to, so a burst of slow first tokens spends
    the window and then waits for ordinary turns to refill it. With fewer
    turns than the window seen yet, the allowance is the full window's
    (``max_share x window_turns``), so a fresh replica can hedge at once.
    """

    def __init__(self, max_share: float, window_turns: int = HEDGE_WINDOW_TURNS):
        self._allowed = max(1, int(max_share * window_turns))
        self._window: deque[bool] = deque(maxlen=window_turns)  # per turn: hedged?
        self._hedges = 0

    def turn(self) -> None:
        if len(self._window) == self._window.maxlen and self._window[0]:
            self._hedges -= 1
        self._window.append(False)

    def can_hedge(self) -> bool:
        """Would ``try_hedge`` succeed now? (Spends nothing.)"""
        return bool(self._window) and not self._window[-1] and self._hedges < self._allowed

    def try_hedge(self) -> bool:
        """Spend one hedge on the latest turn, if the window allows it."""
        if not self.can_hedge():
            return False
        self._window[-1] = True
        self._hedges += 1
        return True

    @property
    def hedges_in_window(self) -> int:
        return self._hedges
