"""Sends attempt outcomes to the tracker in batches, off the hot path.

``add`` only appends to a list; a background task ships whatever has
accumulated every ``interval_s`` with one fire-and-forget actor call, so no
turn ever waits on the tracker to report.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from router.outcome import AttemptOutcome

__all__ = ["OutcomeReporter"]

log = logging.getLogger(__name__)


class OutcomeReporter:
    def __init__(self, send: Callable[[list[AttemptOutcome]], object], interval_s: float = 0.05):
        self._send = send
        self._interval_s = interval_s
        self._batch: list[AttemptOutcome] = []
        self._task: asyncio.Task | None = None

    def add(self, outcomes: list[AttemptOutcome]) -> None:
        if not outcomes:
            return
        self._batch.extend(outcomes)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        try:
            self._send(batch)
        except Exception:  # the tracker may be restarting: routing feedback is best effort
            log.warning("could not report %d outcomes to the tracker", len(batch), exc_info=True)

    async def _run(self) -> None:
        while self._batch:
            await asyncio.sleep(self._interval_s)
            self.flush()
