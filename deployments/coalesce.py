"""A turn's stream, run in a task of its own, read with coalescing.

``CoalescingStream`` runs the turn runner's generator in its own task (so
its timeouts and its cancellation live in one task, whoever reads) and hands
the reader, at each step, everything that has arrived since the last one:
consecutive byte pieces are joined into one. At idle that is one piece per
step, as before (nothing ever waits for more); when the reader is behind
(a busy event loop, a slow downstream) the pieces that piled up cross the
next boundary as one message, which is where a streamed turn's CPU goes
(one Ray object, one socket write, per message rather than per token).

What may pile up is bounded by a ``ReadPacer`` shared with the producer:
past its limit the producer stops reading upstream until the reader
catches up, so a client that never reads costs the router a bounded buffer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from router.turn.pace import ReadPacer

__all__ = ["CoalescingStream"]


class CoalescingStream:
    __slots__ = ("_pieces", "_ready", "_done", "_error", "_task", "_pacer")

    def __init__(self, items: AsyncIterator, pacer: ReadPacer | None = None):
        # ``pacer``: shared with the producer, which stops reading upstream
        # while too many bytes wait here (``router.turn.pace``).
        self._pacer = pacer
        self._pieces: deque = deque()
        self._ready = asyncio.Event()
        self._done = False
        self._error: BaseException | None = None
        self._task = asyncio.ensure_future(self._pump(items))

    async def _pump(self, items: AsyncIterator) -> None:
        try:
            pacer = self._pacer
            async for item in items:
                self._pieces.append(item)
                if pacer is not None and type(item) is bytes:
                    pacer.added(len(item))
                self._ready.set()
        except asyncio.CancelledError:
            pass  # cancel(): the runner has recorded the turn as cancelled
        except BaseException as error:  # handed to the reader, raised there
            self._error = error
        finally:
            self._done = True
            self._ready.set()

    def __aiter__(self) -> "CoalescingStream":
        return self

    async def __anext__(self):
        pieces = self._pieces
        while not pieces:
            if self._done:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        item = pieces.popleft()
        if isinstance(item, bytes) and pieces and isinstance(pieces[0], bytes):
            joined = [item]
            while pieces and isinstance(pieces[0], bytes):
                joined.append(pieces.popleft())
            item = b"".join(joined)
        if self._pacer is not None and type(item) is bytes:
            self._pacer.taken(len(item))
        return item

    def cancel(self) -> None:
        """Stop the turn: its upstream connection closes and it is recorded
        as cancelled. A no-op once the stream has ended."""
        self._task.cancel()

    @property
    def task(self) -> asyncio.Task:
        return self._task
