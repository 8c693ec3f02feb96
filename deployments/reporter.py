"""Sends lease events (attempts started and ended, turns closed) to the
tracker in batches, off the hot path.

``add`` only appends to a list; a background task ships whatever has
accumulated every ``interval_s`` with one fire-and-forget actor call, so no
turn ever waits on the tracker to report. One reporter is one ordered
channel: events leave in the order they were added.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from router.outcome import LeaseEvent

__all__ = ["OutcomeReporter"]

log = logging.getLogger(__name__)


class OutcomeReporter:
    def __init__(self, send: Callable[[list[LeaseEvent]], object], interval_s: float = 0.05):
        self._send = send
        self._interval_s = interval_s
        self._batch: list[LeaseEvent] = []
        self._task: asyncio.Task | None = None

    def add(self, events: list[LeaseEvent]) -> None:
        if not events:
            return
        self._batch.extend(events)
        if self._task is None or self._task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # added from a finalizer outside the loop: the next add ships it
            self._task = loop.create_task(self._run())

    def flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        try:
            self._send(batch)
        except Exception:  # the tracker may be restarting: a lost lease expires there
            log.warning("could not report %d lease events to the tracker", len(batch), exc_info=True)

    async def _run(self) -> None:
        while self._batch:
            await asyncio.sleep(self._interval_s)
            self.flush()
