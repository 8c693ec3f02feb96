"""The turn log: one row per conversational turn, as Hive-partitioned Parquet.

Turns end in ``TurnRecord``s; a ``TurnLogWriter`` buffers them and hands
batches to a ``TurnLogSink`` on a background thread, so logging never slows
or breaks a turn. Sinks: ``LocalParquetSink`` (a local folder) and
``S3ParquetSink`` (S3 through boto3), which ``SpoolingSink`` wraps with a
local spool for at-least-once delivery while S3 is away.
``read_turn_log`` reads a folder or ``s3://bucket/prefix`` back, and
``turnlog.report`` summarises it (``nemo-router report``). The columns are
``TURN_LOG_SCHEMA``.

The package lives in the ``logging/`` source root so that ``import logging``
stays the standard library's; import it as ``turnlog``.
"""

from turnlog.local_sink import LocalParquetSink
from turnlog.reader import read_turn_log
from turnlog.record import AttemptRecord, TurnRecord
from turnlog.s3_client import TurnLogS3Error
from turnlog.s3_sink import S3ParquetSink
from turnlog.schema import PARTITION_COLUMNS, TURN_LOG_SCHEMA, records_to_table
from turnlog.sink import TurnLogSink
from turnlog.spool import SpoolingSink
from turnlog.writer import TurnLogWriter

__all__ = [
    "PARTITION_COLUMNS",
    "TURN_LOG_SCHEMA",
    "AttemptRecord",
    "LocalParquetSink",
    "S3ParquetSink",
    "SpoolingSink",
    "TurnLogS3Error",
    "TurnLogSink",
    "TurnLogWriter",
    "TurnRecord",
    "read_turn_log",
    "records_to_table",
]
