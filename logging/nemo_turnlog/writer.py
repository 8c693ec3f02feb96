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

With a ``WriteAheadLog`` (``wal``), ``emit`` also appends the record to the
current WAL segment before it returns, so a killed process loses nothing:
each flush seals the segment, writes exactly its records as one batch named
after it (``sink.write(table, name=stem)``) and removes it once stored. At
start and at every flush the writer claims segments of dead processes on
its node and writes them the same way, under their own names, so a replay
after a crash between a write and a removal overwrites rather than
duplicates. See ``wal`` for what survives what.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from nemo_turnlog.record import TurnRecord
from nemo_turnlog.record_json import encode_record
from nemo_turnlog.schema import records_to_table
from nemo_turnlog.sink import TurnLogSink
from nemo_turnlog.wal import Segment, WriteAheadLog, read_segment

__all__ = ["TurnLogWriter"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Batch:
    """Records written together; with a WAL, exactly those of ``segment``."""

    records: list[TurnRecord]
    segment: Segment | None = None


class TurnLogWriter:
    """Batches ``TurnRecord``s into a ``TurnLogSink`` on a background thread.

    Defaults: flush every ``flush_interval_s=5.0`` seconds or at
    ``flush_max_records=500`` buffered records, whichever comes first; hold at
    most ``max_buffer_records=100_000`` records, dropping the oldest beyond.
    ``clock`` (seconds, monotonic) decides when an interval has passed; the
    thread still sleeps in real time, so a fake clock only changes which
    wake-ups count as due. ``wal``: an optional ``WriteAheadLog`` (module
    docstring); the writer closes it in ``close``.

    Counters (``stats()``): ``emitted`` records accepted by ``emit``,
    ``written`` records the sink stored, ``dropped`` records discarded for
    lack of room (or emitted after ``close``), ``invalid`` records that did
    not fit the schema and were discarded, ``sink_errors`` failed ``write``
    calls, ``buffered`` records waiting now; with a WAL also ``replayed``
    records recovered from dead processes' segments, ``wal_errors`` records
    (or segments) the WAL could not take or read, ``wal_torn`` unreadable
    lines skipped in replayed segments.
    """

    def __init__(
        self,
        sink: TurnLogSink,
        flush_interval_s: float = 5.0,
        flush_max_records: int = 500,
        max_buffer_records: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        wal: WriteAheadLog | None = None,
    ):
        if flush_interval_s <= 0:
            raise ValueError(f"flush_interval_s must be positive, got {flush_interval_s}")
        if not 1 <= flush_max_records <= max_buffer_records:
            raise ValueError(
                f"need 1 <= flush_max_records <= max_buffer_records, got {flush_max_records} and {max_buffer_records}"
            )
        self._sink = sink
        self._wal = wal
        self._interval_s = flush_interval_s
        self._flush_max = flush_max_records
        self._max_buffer = max_buffer_records
        self._clock = clock
        self._open: list[TurnRecord] = []  # since the last flush; with a WAL, the open segment's
        self._sealed: deque[_Batch] = deque()  # taken by a flush that failed, oldest first
        self._buffered = 0  # records in _open and _sealed
        self._lock = threading.Lock()  # guards the buffers, the WAL's appends, counters and _closed
        self._flush_lock = threading.Lock()  # one flush at a time keeps batches in order
        self._wake = threading.Event()
        self._closed = False
        counters = ("emitted", "written", "dropped", "invalid", "sink_errors")
        wal_counters = ("replayed", "wal_errors", "wal_torn") if wal is not None else ()
        self._counts = dict.fromkeys((*counters, *wal_counters), 0)
        self._thread = threading.Thread(target=self._run, name="turnlog-writer", daemon=True)
        self._thread.start()

    def emit(self, record: TurnRecord) -> None:
        """Queue one record (and append it to the WAL); never raises.

        The only I/O is the WAL's one small ``write`` (and, once per flush,
        opening the next segment): no flush, no network, no ``fsync``.
        """
        line = self._encode(record) if self._wal is not None else None
        with self._lock:
            if self._closed:
                self._counts["dropped"] += 1
                return
            self._counts["emitted"] += 1
            if line is not None:
                self._append_to_wal(line)
            self._open.append(record)
            self._buffered += 1
            self._drop_overflow()
            # Wake the thread only on crossing the threshold, so a backlog
            # left by a failing sink does not wake it on every emit.
            crossed = self._buffered == self._flush_max
        if crossed:
            self._wake.set()

    def flush(self) -> None:
        """Write everything buffered now, on the caller's thread; never raises.

        Blocks on the sink's I/O, so call it from a worker thread rather than
        an event loop. On a sink error the records stay buffered for the next
        flush.
        """
        with self._flush_lock:
            self._adopt_orphans()
            self._flush_locked()
            self._retry_spooled_locked()

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the thread (waiting at most ``timeout_s`` seconds), write what
        is left, and close the sink. Later ``emit`` calls are dropped.

        Records the sink refuses in this last flush are lost to this writer
        (``stats()`` still shows them as ``buffered``); with a WAL they stay
        in their segments, for a writer started after this process ends.
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
                if self._wal is not None:
                    self._wal.close()
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
            return {**self._counts, "buffered": self._buffered}

    def _run(self) -> None:
        if self._wal is not None:  # a restarted replica writes what its predecessor left at once
            self._guarded(self._replay_orphans)
        next_flush_s = self._clock() + self._interval_s
        while True:
            self._wake.wait(timeout=max(next_flush_s - self._clock(), 0.0))
            self._wake.clear()
            with self._lock:
                if self._closed:
                    return  # close() does the final flush
                full = self._buffered >= self._flush_max
            if full or self._clock() >= next_flush_s:
                self._guarded(self.flush)
                next_flush_s = self._clock() + self._interval_s

    def _replay_orphans(self) -> None:
        """Write dead processes' segments now, leaving this writer's own
        records for their flush (so start-up does not split a batch)."""
        with self._flush_lock:
            if self._adopt_orphans():
                self._flush_locked(seal_open=False)

    def _guarded(self, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:  # flush() catches what it expects; this keeps the thread alive
            logger.error("turn log: unexpected error while flushing (%s)", type(exc).__name__)

    def _flush_locked(self, seal_open: bool = True) -> None:
        with self._lock:
            if self._open and seal_open:
                segment = self._rotate_wal()
                self._sealed.append(_Batch(self._open, segment))
                self._open = []
            batches = list(self._sealed)
            self._sealed.clear()
            self._buffered -= sum(len(batch.records) for batch in batches)
        if self._wal is None and len(batches) > 1:  # no names to keep apart: one write
            batches = [_Batch([record for batch in batches for record in batch.records])]
        for index, batch in enumerate(batches):
            error = self._write(batch)
            if error is not None:
                self._keep_for_retry(batches[index:], error)
                return

    def _write(self, batch: _Batch) -> Exception | None:
        """Store one batch, then forget its segment; the sink's error, if any."""
        batch.records, table = self._to_table(batch.records)
        if table is not None:
            try:
                if batch.segment is None:
                    self._sink.write(table)
                else:
                    self._sink.write(table, name=batch.segment.stem)
            except Exception as exc:
                return exc
            with self._lock:
                self._counts["written"] += table.num_rows
        if batch.segment is not None:
            self._wal.remove(batch.segment)
        return None

    def _adopt_orphans(self) -> int:
        """Queue the records of dead processes' WAL segments, each segment
        one batch under its own name; how many segments."""
        if self._wal is None:
            return 0
        try:
            segments = self._wal.claim_orphans()
        except OSError as exc:
            logger.warning("turn log: could not scan the WAL folder (%s)", type(exc).__name__)
            return 0
        batches = []
        for segment in segments:
            try:
                records, torn = read_segment(segment)
            except OSError as exc:
                logger.warning("turn log: could not read WAL segment %s (%s)", segment.path.name, type(exc).__name__)
                with self._lock:
                    self._counts["wal_errors"] += 1
                continue
            batches.append(_Batch(records, segment))
            with self._lock:
                self._counts["replayed"] += len(records)
                self._counts["wal_torn"] += torn
        if batches:
            logger.info("turn log: replaying %d records from %d WAL segments of ended processes",
                        sum(len(b.records) for b in batches), len(batches))
            with self._lock:
                self._sealed.extendleft(reversed(batches))
                self._buffered += sum(len(b.records) for b in batches)
        return len(segments)

    def _encode(self, record: TurnRecord) -> bytes | None:
        try:
            return encode_record(record)
        except Exception:  # an odd value in a field: the record stays in memory only
            with self._lock:
                self._counts["wal_errors"] += 1
            return None

    def _append_to_wal(self, line: bytes) -> None:
        """Under ``_lock``: the record goes into the segment of its batch."""
        try:
            self._wal.append(line)
        except OSError as exc:
            self._counts["wal_errors"] += 1
            if self._counts["wal_errors"] == 1:  # once, not once per turn
                logger.warning("turn log: the WAL cannot be written (%s); records are in memory only", type(exc).__name__)

    def _rotate_wal(self) -> Segment | None:
        """Under ``_lock``: seal the open segment."""
        if self._wal is None:
            return None
        try:
            return self._wal.rotate()
        except OSError as exc:
            self._counts["wal_errors"] += 1
            logger.warning("turn log: sealing a WAL segment failed (%s)", type(exc).__name__)
            return None

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
        if not batch:
            return batch, None
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

    def _keep_for_retry(self, batches: list[_Batch], exc: Exception) -> None:
        with self._lock:
            self._counts["sink_errors"] += 1
            self._sealed.extendleft(reversed(batches))
            self._buffered += sum(len(batch.records) for batch in batches)
            overflow = self._drop_overflow()
            kept = self._buffered
        logger.warning(
            "turn log: sink write failed (%s: %s); keeping %d records for the next flush, dropped %d",
            type(exc).__name__,
            exc,
            kept,
            overflow,
        )

    def _drop_overflow(self) -> int:
        """Under ``_lock``: drop the oldest records beyond ``max_buffer_records``.

        A dropped record stays in its WAL segment until the segment's batch
        is written; only a crash before then brings it back."""
        overflow = max(self._buffered - self._max_buffer, 0)
        for _ in range(overflow):
            # An emptied batch stays queued: its flush removes its segment.
            oldest = next((batch.records for batch in self._sealed if batch.records), self._open)
            oldest.pop(0)
        self._buffered -= overflow
        self._counts["dropped"] += overflow
        return overflow


def _fits(record: TurnRecord) -> bool:
    try:
        records_to_table([record])
    except Exception:
        return False
    return True
