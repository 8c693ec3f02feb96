"""The turn log: one row per conversational turn, as Hive-partitioned Parquet.

Turns end in ``TurnRecord``s; a ``TurnLogWriter`` buffers them and hands
batches to a ``TurnLogSink`` on a background thread, so logging never slows
or breaks a turn. Sinks: ``LocalParquetSink`` (a local folder) and
``S3ParquetSink`` (S3 through boto3), which ``SpoolingSink`` wraps with a
local spool for at-least-once delivery while S3 is away. A
``WriteAheadLog`` keeps every buffered record in a local file until its
batch is stored, so a killed process loses none (``nemo_turnlog.wal``).
``read_turn_log`` reads a folder or ``s3://bucket/prefix`` back, and
``nemo_turnlog.report`` summarises it (``nemo-router report``). The columns are
``TURN_LOG_SCHEMA``.

The package lives in the ``logging/`` source root so that ``import logging``
stays the standard library's; import it as ``nemo_turnlog``.
"""

from nemo_turnlog.local_sink import LocalParquetSink
from nemo_turnlog.reader import read_turn_log
from nemo_turnlog.record import AttemptRecord, TurnRecord
from nemo_turnlog.s3_client import TurnLogS3Error
from nemo_turnlog.s3_sink import S3ParquetSink
from nemo_turnlog.schema import PARTITION_COLUMNS, TURN_LOG_SCHEMA, records_to_table
from nemo_turnlog.sink import TurnLogSink
from nemo_turnlog.spool import SpoolingSink
from nemo_turnlog.wal import WriteAheadLog
from nemo_turnlog.writer import TurnLogWriter

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
    "WriteAheadLog",
    "read_turn_log",
    "records_to_table",
]
