"""A sink that writes turn-log batches into a local folder.

Each batch becomes one Parquet file per (dt, hour) it touches, under
``root/dt=YYYY-MM-DD/hour=HH/<replica>-<seq>-<hex>-<i>.parquet``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from nemo_turnlog.record import TurnRecord
from nemo_turnlog.schema import PARTITION_COLUMNS
from nemo_turnlog.sink import as_table, basename_template, check_replica_id

__all__ = ["LocalParquetSink"]


class LocalParquetSink:
    """Writes each batch as Hive-partitioned Parquet under ``root``.

    ``replica_id`` starts every file name, so replicas sharing a folder never
    collide; a per-sink flush counter and a random suffix make names unique
    across flushes and restarts. The folder is created on the first write.

    Files are written under a hidden name (leading ``.``) and renamed into
    place once complete, so a reader listing the folder mid-write never sees
    a half-written file: Arrow's dataset discovery skips hidden files.
    """

    def __init__(self, root: str | Path, replica_id: str):
        self.root = Path(root)
        self.replica_id = check_replica_id(replica_id)
        self._flush_seq = itertools.count()

    def write(self, batch: pa.Table | Sequence[TurnRecord], name: str | None = None) -> None:
        """Store the batch; ``name`` (a plain file-name part) replaces the
        generated name, so writing the same batch again overwrites it."""
        table = as_table(batch)
        if table.num_rows == 0:
            return
        written: list[str] = []
        try:
            ds.write_dataset(
                table,
                self.root,
                format="parquet",
                partitioning=list(PARTITION_COLUMNS),
                partitioning_flavor="hive",
                basename_template="." + basename_template(self.replica_id, next(self._flush_seq), name),
                existing_data_behavior="overwrite_or_ignore",
                file_visitor=lambda file: written.append(file.path),
            )
        except BaseException:
            _remove_quietly(written)
            raise
        # A failure part-way through the renames leaves some partitions
        # published; the writer's retry then duplicates those rows. Renames
        # within one folder practically never fail, so we accept that.
        for path in written:
            folder, name = os.path.split(path)
            os.replace(path, os.path.join(folder, name[1:]))

    def close(self) -> None:
        """Nothing to release: every write is complete when it returns."""

    def __repr__(self) -> str:
        return f"LocalParquetSink(root={str(self.root)!r}, replica_id={self.replica_id!r})"


def _remove_quietly(paths: list[str]) -> None:
    # Hidden leftovers are harmless to readers; removing them only saves space.
    for path in paths:
        try:
            os.remove(path)
        except OSError:
            pass
