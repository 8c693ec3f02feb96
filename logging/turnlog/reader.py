"""Reads a turn-log folder back as one Arrow table."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from turnlog.schema import PARTITION_COLUMNS, TURN_LOG_SCHEMA

__all__ = ["read_turn_log"]

# Explicit string types: left to inference, Hive partitioning would read
# ``hour=07`` as the integer 7.
_PARTITIONING = ds.partitioning(
    pa.schema([TURN_LOG_SCHEMA.field(name) for name in PARTITION_COLUMNS]),
    flavor="hive",
)


def read_turn_log(root: str | Path) -> pa.Table:
    """Every row under ``root`` with ``TURN_LOG_SCHEMA``'s columns, in its order.

    ``dt`` and ``hour`` come from the folder names, as strings. Files written
    before a column existed read back with nulls in it. Hidden files (``.``
    or ``_`` prefix, e.g. files still being written) are skipped. A missing
    or empty folder gives an empty table.
    """
    root = Path(root)
    if not root.is_dir():
        return TURN_LOG_SCHEMA.empty_table()
    dataset = ds.dataset(root, schema=TURN_LOG_SCHEMA, format="parquet", partitioning=_PARTITIONING)
    return dataset.to_table()
