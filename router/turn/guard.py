"""The ingress's hold on one turn's leases.

Between the plan and the end of the turn, the leases the turn holds at the
tracker have two possible owners of their release: the caller that runs the
turn (each attempt's outcome releases its own lease), and the ingress. A
``TurnGuard`` makes the ingress's part exactly one of two things:

- ``settle()``: the caller's stream (or reply) came to its end, so the caller
  has reported every attempt it started, in order, on its own channel;
The guard exists from before the plan is asked for: a client that leaves
while the tracker is planning (the plan holds a lease the ingress never
saw) is a close like any other.

- ``close()``: anything else. The client left before or after dispatch, the
  dispatch failed (a 500 after planning), the caller died, or the response
  was dropped before it ever started (``__del__``). The tracker is told the
  turn is closed (``TurnClosed``): it releases whatever the turn still holds
  and ignores the turn's later starts. Releases are idempotent there, so a
  close racing the caller's own outcomes never releases twice.
"""

from __future__ import annotations

from collections.abc import Callable

from router.outcome import TurnClosed

__all__ = ["TurnGuard"]


class TurnGuard:
    __slots__ = ("turn_id", "on_close", "_report", "_open")

    def __init__(self, turn_id: str, report: Callable[[list], None], on_close: Callable[[], None] | None = None):
        self.turn_id = turn_id
        self._report = report
        self.on_close = on_close  # e.g. cancel the caller's stream, once there is one
        self._open = True

    def settle(self) -> None:
        """The caller reported the whole turn: nothing for the ingress to release."""
        self._open = False

    def close(self) -> None:
        """The turn ended any other way: release what it holds (once)."""
        if not self._open:
            return
        self._open = False
        if self.on_close is not None:
            self.on_close()
        self._report([TurnClosed(self.turn_id)])

    def __del__(self) -> None:
        # A response dropped before its body was ever iterated never runs
        # the body's ``finally``: the guard going away still closes the turn.
        if self._open:
            self.close()
