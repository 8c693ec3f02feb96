"""Stopping the turns a process runs, when the router stops.

A router that stops drains: it refuses new turns, lets the turns in flight
finish for a grace period, and then stops the rest. A stopped turn is not a
failed endpoint and not a gone client: its attempt is recorded as cancelled
(nothing counts against the endpoint), and the client hears the router's
own ``router_stopping`` error (a 503 before the stream starts, an SSE error
event and ``[DONE]`` after), never a cut connection. Its record says so.

``TurnStop`` is one turn's switch. Every deadline the turn is waiting on
(``asyncio.timeout`` of the attempt being opened or forwarded) is watched
by it, so a stop wakes the turn wherever it waits, at once, through the
same path a deadline takes; the runner tells the two apart by ``requested``.
``LiveTurns`` is the set a process runs: it is what a drain waits on and
what it stops at the end of the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable, Iterator

__all__ = ["LiveTurns", "TurnStop"]


class TurnStop:
    """One turn's stop switch; ``requested`` once flipped, never reset."""

    __slots__ = ("requested", "_deadlines")

    def __init__(self) -> None:
        self.requested = False
        self._deadlines: set[asyncio.Timeout] = set()

    @contextlib.contextmanager
    def watching(self, deadline: asyncio.Timeout) -> Iterator[asyncio.Timeout]:
        """While the block runs, a stop expires ``deadline`` at once (a
        stop requested before the block expires it on entry)."""
        if self.requested:
            _expire(deadline)
        self._deadlines.add(deadline)
        try:
            yield deadline
        finally:
            self._deadlines.discard(deadline)

    def request(self) -> None:
        self.requested = True
        for deadline in tuple(self._deadlines):
            _expire(deadline)


def _expire(deadline: asyncio.Timeout) -> None:
    if not deadline.expired():
        deadline.reschedule(asyncio.get_running_loop().time())


class LiveTurns:
    """The turns this process is running, each with its ``TurnStop``.

    A turn is added when it starts and discarded when its record goes out,
    whichever way it ends; ``wait_empty`` is what a drain waits on. Keys are
    anything hashable and unique while live (a turn id; the ingress uses
    one token per response it is sending).
    """

    __slots__ = ("_stops", "_empty")

    def __init__(self) -> None:
        self._stops: dict[Hashable, TurnStop] = {}
        self._empty: asyncio.Event | None = None

    def __len__(self) -> int:
        return len(self._stops)

    def add(self, turn_id: Hashable) -> TurnStop:
        stop = self._stops[turn_id] = TurnStop()
        return stop

    def discard(self, turn_id: Hashable) -> None:
        self._stops.pop(turn_id, None)
        if not self._stops and self._empty is not None:
            self._empty.set()

    def stop_all(self) -> int:
        """Stop every live turn; how many there were."""
        for stop in tuple(self._stops.values()):
            stop.request()
        return len(self._stops)

    async def wait_empty(self, timeout_s: float) -> bool:
        """Wait until no turn is live, at most ``timeout_s``; whether none is."""
        if not self._stops:
            return True
        if self._empty is None:
            self._empty = asyncio.Event()
        self._empty.clear()
        try:
            async with asyncio.timeout(max(0.0, timeout_s)):
                await self._empty.wait()
        except TimeoutError:
            pass
        return not self._stops
