"""Export callbacks: your own code sees every batch of turns, in a few lines.

A callback is any object with ``on_turns(records)``; ``CallbackSink`` makes
it a ``TurnLogSink`` and ``FanoutSink`` hands each batch to several sinks::

    class PrintSlowTurns:
        def on_turns(self, records):
            for r in records:
                if r.ttft_s is not None and r.ttft_s > 1.0:
                    print(f"slow turn {r.request_id} on {r.endpoint}: {r.ttft_s:.2f} s")

    writer = TurnLogWriter(FanoutSink([PrintSlowTurns()], primary=LocalParquetSink(path, replica_id)))

Callbacks run on the writer's background thread, never on a turn's path.
Anything slow (network) belongs on the callback's own thread, as the
Langfuse and Datadog exporters do with an ``Outbox``. A callback may also
have ``close()``; ``CallbackSink.close`` calls it.

``FanoutSink`` isolates failures: a sink or callback that raises is logged
(class name only) and counted, and the others still get the batch. The
``primary`` sink is the exception, on purpose: it is the turn log itself,
so its error propagates to the ``TurnLogWriter``, which keeps the batch and
retries it. The other sinks see a batch only after the primary stored it,
so a retried batch never reaches them twice, and what they see is what the
log holds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import pyarrow as pa

from nemo_turnlog.record import AttemptRecord, TurnRecord
from nemo_turnlog.schema import PARTITION_COLUMNS
from nemo_turnlog.sink import TurnLogSink

__all__ = ["CallbackSink", "FanoutSink", "TurnCallback", "records_from_table"]

logger = logging.getLogger(__name__)


@runtime_checkable
class TurnCallback(Protocol):
    """Receives each batch of finished turns; should not raise (if it does,
    ``FanoutSink`` logs and counts it)."""

    def on_turns(self, records: Sequence[TurnRecord]) -> None: ...


def records_from_table(table: pa.Table) -> list[TurnRecord]:
    """The records of a turn-log table (the inverse of ``records_to_table``)."""
    records = []
    for row in table.to_pylist():
        for column in PARTITION_COLUMNS:
            row.pop(column, None)
        row["attempts"] = [AttemptRecord(**a) for a in row.get("attempts") or []]
        row["tags"] = list(row.get("tags") or [])
        records.append(TurnRecord(**row))
    return records


def _as_records(batch: pa.Table | Sequence[TurnRecord]) -> Sequence[TurnRecord]:
    return records_from_table(batch) if isinstance(batch, pa.Table) else batch


class CallbackSink:
    """A ``TurnLogSink`` that passes each batch, as records, to a callback."""

    def __init__(self, callback: TurnCallback):
        self.callback = callback

    def write(self, batch: pa.Table | Sequence[TurnRecord]) -> None:
        self.callback.on_turns(_as_records(batch))

    def close(self) -> None:
        close = getattr(self.callback, "close", None)
        if close is not None:
            close()

    def __repr__(self) -> str:
        return f"CallbackSink({self.callback!r})"


class FanoutSink:
    """Writes each batch to ``primary`` (if any), then to every other sink.

    ``sinks`` may mix ``TurnLogSink``s and ``TurnCallback``s (wrapped in
    ``CallbackSink``). The batch is turned into records once and shared.
    ``stats()`` counts ``errors`` per sink, by position in ``sinks``.
    ``retry_spooled`` is passed on to the primary, so a ``SpoolingSink``
    behind a fan-out still drains its spool.
    """

    def __init__(self, sinks: Sequence[TurnLogSink | TurnCallback], *, primary: TurnLogSink | None = None):
        self._primary = primary
        self._sinks = [s if isinstance(s, TurnLogSink) else CallbackSink(s) for s in sinks]
        self._errors = [0] * len(self._sinks)

    def write(self, batch: pa.Table | Sequence[TurnRecord], name: str | None = None) -> None:
        """``name`` goes to the primary (the exporters name nothing)."""
        if self._primary is not None:
            # Raises: the writer keeps the batch and retries.
            if name is None:
                self._primary.write(batch)
            else:
                self._primary.write(batch, name=name)
        if not self._sinks:
            return
        records = _as_records(batch)
        for index, sink in enumerate(self._sinks):
            try:
                sink.write(records)
            except Exception as exc:
                self._errors[index] += 1
                # The class name only: a message may quote a URL or a record.
                logger.warning("turn log: sink %d (%s) failed with %s", index, type(sink).__name__, type(exc).__name__)

    def retry_spooled(self) -> None:
        retry = getattr(self._primary, "retry_spooled", None)
        if retry is not None:
            retry()

    def close(self) -> None:
        for sink in [*self._sinks, *([self._primary] if self._primary is not None else [])]:
            try:
                sink.close()
            except Exception as exc:  # closing one must not keep the others open
                logger.warning("turn log: closing %s failed with %s", type(sink).__name__, type(exc).__name__)

    def stats(self) -> dict[str, list[int]]:
        return {"errors": list(self._errors)}

    def __repr__(self) -> str:
        return f"FanoutSink({self._sinks!r}, primary={self._primary!r})"
