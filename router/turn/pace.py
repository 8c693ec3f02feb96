"""How far a streamed turn may run ahead of the client reading it.

A client that stops reading (a stalled phone, a hostile client) must not
make the router hold its reply: the turn's producer (the turn runner,
reading upstream) and its reader (whoever sends the bytes on) share a
``ReadPacer``. The reader's buffer counts the bytes waiting for it; once
``limit_bytes`` wait, the runner stops reading upstream until the reader
takes them, so the upstream's own connection pushes back (TCP flow
control) and the router's memory per stalled turn stays bounded, however
long the reply. The wait happens inside the turn's deadline: a client that
reads nothing until the turn's ``total_s`` ends it, recorded as the
client's doing, not the endpoint's.

At idle the reader takes each piece as it comes and the runner never
waits; the check is one comparison per piece.
"""

from __future__ import annotations

import asyncio

__all__ = ["ReadPacer", "wait_for_reader"]


class ReadPacer:
    """Bytes buffered for one turn's reader, against ``limit_bytes``."""

    __slots__ = ("limit_bytes", "buffered_bytes", "pauses", "_room")

    def __init__(self, limit_bytes: int):
        self.limit_bytes = limit_bytes
        self.buffered_bytes = 0
        self.pauses = 0  # how many times the runner waited for the reader
        self._room: asyncio.Event | None = None

    @property
    def full(self) -> bool:
        return self.buffered_bytes >= self.limit_bytes

    def added(self, n_bytes: int) -> None:
        self.buffered_bytes += n_bytes

    def taken(self, n_bytes: int) -> None:
        self.buffered_bytes -= n_bytes
        if self._room is not None and not self.full:
            self._room.set()

    async def wait_for_room(self) -> None:
        """Return once the reader has taken enough to be under the limit."""
        self.pauses += 1
        if self._room is None:
            self._room = asyncio.Event()
        while self.full:
            self._room.clear()
            await self._room.wait()


async def wait_for_reader(turn, pacer: ReadPacer) -> None:
    """Pause ``turn``'s upstream reads (a ``TurnState``) until its reader
    catches up; the turn's deadline still runs, and is told apart by
    ``turn.waiting_for_reader``."""
    turn.waiting_for_reader = True
    await pacer.wait_for_room()
    # Not in a ``finally``: a deadline that fires in the wait must still
    # find the flag set where the runner tells why the turn timed out.
    turn.waiting_for_reader = False
