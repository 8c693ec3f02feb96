"""Buffers turn records and hands them to a sink in batches, off the turn's path.

``emit`` only appends to an in-memory buffer under a lock, so a turn never
waits on disk or network and never sees a turn-log error. A daemon thread
flushes the buffer to the sink every ``flush_interval_s`` seconds, or sooner
once ``flush_max_records`` records are waiting. Because the work happens on
its own thread, the writer behaves the same whether or not the caller's
thread runs an asyncio loop (as a Ray Serve replica's does).

When the sink fails, the batch goes back to the front of the buffer and is
retried at the next flush; while the sink keeps failing, retries happen once
per interval (or once per ``flush_max_records`` new records), not in a tight
loop. The buffer never holds more than ``max_buffer_records``: beyond that
the oldest records are dropped and counted, because memory in a replica is
worth more than the oldest turn records.

A sink with a spool (``SpoolingSink``) gets its ``retry_spooled()`` called
after every flush, so spooled batches go up once per interval at least.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import pyarrow as pa

from nemo_turnlog.record import TurnRecord
from nemo_turnlog.schema import records_to_table
from nemo_turnlog.sink import TurnLogSink

__all__ = ["TurnLogWriter"]

logger = logging.getLogger(__name__)


class TurnLogWriter:
    """Batches ``TurnRecord``s into a ``TurnLogSink`` on a background thread.

    Defaults: flush every ``flush_interval_s=5.0`` seconds or at
    ``flush_max_records=500`` buffered records, whichever comes first; hold at
    most ``max_buffer_records=100_000`` records, dropping the oldest beyond.
    ``clock`` (seconds, monotonic) decides when an interval has passed; the
    thread still sleeps in real time, so a fake clock only changes which
    wake-ups count as due.

    Counters (``stats()``): ``emitted`` records accepted by ``emit``,
    ``written`` records the sink stored, ``dropped`` records discarded for
    lack of room (or emitted after ``close``), ``invalid`` records that did
    not fit the schema and were discarded, ``sink_errors`` failed ``write``
    calls, ``buffered`` records waiting now.
    """

    def __init__(
        self,
        sink: TurnLogSink,
        flush_interval_s: float = 5.0,
        flush_max_records: int = 500,
        max_buffer_records: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        if flush_interval_s <= 0:
            raise ValueError(f"flush_interval_s must be positive, got {flush_interval_s}")
        if not 1 <= flush_max_records <= max_buffer_records:
            raise ValueError(
                f"need 1 <= flush_max_records <= max_buffer_records, got {flush_max_records} and {max_buffer_records}"
            )
        self._sink = sink
        self._interval_s = flush_interval_s
        self._flush_max = flush_max_records
        self._max_buffer = max_buffer_records
        self._clock = clock
        self._buffer: deque[TurnRecord] = deque()
        self._lock = threading.Lock()  # guards the buffer, counters and _closed
        self._flush_lock = threading.Lock()  # one flush at a time keeps batches in order
        self._wake = threading.Event()
        self._closed = False
        self._counts = dict.fromkeys(("emitted", "written", "dropped", "invalid", "sink_errors"), 0)
        self._thread = threading.Thread(target=self._run, name="turnlog-writer", daemon=True)
        self._thread.start()

    def emit(self, record: TurnRecord) -> None:
        """Queue one record; never blocks on I/O and never raises."""
        with self._lock:
            if self._closed:
                self._counts["dropped"] += 1
                return
            self._counts["emitted"] += 1
            if len(self._buffer) >= self._max_buffer:
                self._buffer.popleft()
                self._counts["dropped"] += 1
            self._buffer.append(record)
            # Wake the thread only on crossing the threshold, so a backlog
            # left by a failing sink does not wake it on every emit.
            crossed = len(self._buffer) == self._flush_max
        if crossed:
            self._wake.set()

    def flush(self) -> None:
        """Write everything buffered now, on the caller's thread; never raises.

        Blocks on the sink's I/O, so call it from a worker thread rather than
        an event loop. On a sink error the records stay buffered for the next
        flush.
        """
        with self._flush_lock:
            self._flush_locked()
            self._retry_spooled_locked()

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the thread (waiting at most ``timeout_s`` seconds), write what
        is left, and close the sink. Later ``emit`` calls are dropped.

        Records the sink refuses in this last flush are lost; ``stats()``
        still shows them as ``buffered``.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake.set()
        self._thread.join(timeout_s)
        if self._flush_lock.acquire(timeout=timeout_s):
            try:
                self._flush_locked()
            finally:
                self._flush_lock.release()
        else:
            logger.warning("turn log: a flush is still running after %.1f s; closing without a final flush", timeout_s)
        try:
            self._sink.close()
        except Exception as exc:  # a failing close must not break shutdown
            logger.warning("turn log: closing the sink failed (%s)", type(exc).__name__)

    def stats(self) -> dict[str, int]:
        """A snapshot of the counters (see the class docstring)."""
        with self._lock:
            return {**self._counts, "buffered": len(self._buffer)}

    def _run(self) -> None:
        next_flush_s = self._clock() + self._interval_s
        while True:
            self._wake.wait(timeout=max(next_flush_s - self._clock(), 0.0))
            self._wake.clear()
            with self._lock:
                if self._closed:
                    return  # close() does the final flush
                full = len(self._buffer) >= self._flush_max
            if full or self._clock() >= next_flush_s:
                try:
                    self.flush()
                except Exception as exc:  # flush() catches what it expects; this keeps the thread alive
                    logger.error("turn log: unexpected error while flushing (%s)", type(exc).__name__)
                next_flush_s = self._clock() + self._interval_s

    def _flush_locked(self) -> None:
        with self._lock:
            batch = list(self._buffer)
            self._buffer.clear()
        if not batch:
            return
        batch, table = self._to_table(batch)
        if table is None:
            return
        try:
            self._sink.write(table)
        except Exception as exc:
            self._keep_for_retry(batch, exc)
            return
        with self._lock:
            self._counts["written"] += table.num_rows

    def _retry_spooled_locked(self) -> None:
        retry = getattr(self._sink, "retry_spooled", None)
        if retry is None:
            return
        try:
            retry()
        except Exception as exc:  # the spool stays on disk for the next try
            logger.warning("turn log: retrying the spool failed (%s: %s)", type(exc).__name__, exc)

    def _to_table(self, batch: list[TurnRecord]) -> tuple[list[TurnRecord], pa.Table | None]:
        """The records that fit the schema and their table (None if none fit).

        Records that do not fit are discarded one by one, so one bad record
        cannot hold the rest of its batch back forever.
        """
        try:
            return batch, records_to_table(batch)
        except Exception:
            pass
        valid = [r for r in batch if _fits(r)]
        table = None
        if valid:
            try:
                table = records_to_table(valid)
            except Exception:  # each fits alone but not together: give up on them
                valid = []
        with self._lock:
            self._counts["invalid"] += len(batch) - len(valid)
        # Only the count: record contents may hold user or key identifiers.
        logger.warning("turn log: discarded %d records that do not fit the schema", len(batch) - len(valid))
        return valid, table

    def _keep_for_retry(self, batch: list[TurnRecord], exc: Exception) -> None:
        with self._lock:
            self._counts["sink_errors"] += 1
            self._buffer.extendleft(reversed(batch))
            overflow = max(len(self._buffer) - self._max_buffer, 0)
            for _ in range(overflow):
                self._buffer.popleft()
            self._counts["dropped"] += overflow
            kept = len(self._buffer)
        logger.warning(
            "turn log: sink write failed (%s: %s); keeping %d records for the next flush, dropped %d",
            type(exc).__name__,
            exc,
            kept,
            overflow,
        )


def _fits(record: TurnRecord) -> bool:
    try:
        records_to_table([record])
    except Exception:
        return False
    return True
