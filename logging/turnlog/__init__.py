"""The turn log: one row per conversational turn, as Hive-partitioned Parquet.

Turns end in ``TurnRecord``s; a ``TurnLogWriter`` buffers them and hands
batches to a ``TurnLogSink`` (``LocalParquetSink`` for a local folder) on a
background thread, so logging never slows or breaks a turn.
``read_turn_log`` reads a folder back. The columns are ``TURN_LOG_SCHEMA``.

The package lives in the ``logging/`` source root so that ``import logging``
stays the standard library's; import it as ``turnlog``.
"""

from turnlog.local_sink import LocalParquetSink
from turnlog.reader import read_turn_log
from turnlog.record import AttemptRecord, TurnRecord
from turnlog.schema import PARTITION_COLUMNS, TURN_LOG_SCHEMA, records_to_table
from turnlog.sink import TurnLogSink
from turnlog.writer import TurnLogWriter

__all__ = [
    "PARTITION_COLUMNS",
    "TURN_LOG_SCHEMA",
    "AttemptRecord",
    "LocalParquetSink",
    "TurnLogSink",
    "TurnLogWriter",
    "TurnRecord",
    "read_turn_log",
    "records_to_table",
]
