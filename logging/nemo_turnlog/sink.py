"""The sink protocol: where batches of turn records end up.

A sink stores one batch per ``write`` call as Hive-partitioned Parquet
(``dt=YYYY-MM-DD/hour=HH/<name>.parquet``) and knows nothing about
buffering, timing or retries; ``TurnLogWriter`` owns those. A sink may raise
from ``write``: that is how the writer learns to keep the batch and retry.
The writer never lets that error reach a turn.

A sink that keeps batches aside for later (``SpoolingSink``) also has
``retry_spooled()``; the writer calls it after every flush, on its own
thread, and logs (never raises) what it raises.

Every object a sink writes is named by ``object_name`` (or, for
``write_dataset``, ``basename_template``), so names are unique per replica
and flush and two replicas never overwrite each other. The Parquet sinks
also take ``write(batch, name=...)``: the writer passes a WAL segment's
stem, so a batch written again (a replay after a crash) replaces its own
files instead of adding copies.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import pyarrow as pa

from nemo_turnlog.record import TurnRecord
from nemo_turnlog.schema import records_to_table

__all__ = ["TurnLogSink", "as_table", "basename_template", "check_replica_id", "object_name"]


@runtime_checkable
class TurnLogSink(Protocol):
    """Stores batches of turn records.

    ``write`` takes a table with ``TURN_LOG_SCHEMA`` (or the records, which it
    converts) and returns once the batch is durable; it raises on failure.
    ``close`` releases whatever the sink holds (clients, handles).
    """

    def write(self, batch: pa.Table | Sequence[TurnRecord]) -> None: ...

    def close(self) -> None: ...


def as_table(batch: pa.Table | Sequence[TurnRecord]) -> pa.Table:
    """The batch as a table with the turn-log schema."""
    return batch if isinstance(batch, pa.Table) else records_to_table(batch)


def check_replica_id(replica_id: str) -> str:
    """Reject ids that would escape the partition folder or break the template."""
    if not replica_id or any(c in replica_id for c in "/\\{}") or replica_id.startswith((".", "_")):
        raise ValueError(f"replica_id must be a plain, non-hidden file-name part, got {replica_id!r}")
    return replica_id


def object_name(replica_id: str, flush_seq: int) -> str:
    """One flush's file name: ``<replica>-<seq:06d>-<8 hex>.parquet``.

    The random part keeps names unique when a replica restarts and its
    ``flush_seq`` starts again from zero.
    """
    return f"{replica_id}-{flush_seq:06d}-{uuid.uuid4().hex[:8]}.parquet"


def basename_template(replica_id: str, flush_seq: int, name: str | None = None) -> str:
    """``write_dataset`` basename: ``name`` (else ``object_name``) with
    ``-{i}`` before ``.parquet``."""
    stem = check_replica_id(name) if name is not None else object_name(replica_id, flush_seq).removesuffix(".parquet")
    return stem + "-{i}.parquet"
