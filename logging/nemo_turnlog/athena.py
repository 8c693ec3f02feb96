"""The turn log as an Athena (or any Hive-metastore) table: the DDL, made
from ``TURN_LOG_SCHEMA`` so it never drifts from what the router writes.

    print(athena_ddl("s3://my-turns/turnlog"))     # nemo-router report --athena-ddl s3://my-turns/turnlog

Every column name is quoted (``timestamp`` is a reserved word in Athena's
DDL); the partitions (``dt=YYYY-MM-DD/hour=HH/``, in the object keys, not
the files) are found by partition projection, so no ``MSCK REPAIR`` or
crawler is needed as days go by.
"""

from __future__ import annotations

import pyarrow as pa

from nemo_turnlog.schema import PARTITION_COLUMNS, TURN_LOG_SCHEMA

__all__ = ["athena_ddl", "hive_type"]

_SCALARS = {
    pa.string(): "string",
    pa.bool_(): "boolean",
    pa.int32(): "int",
    pa.int64(): "bigint",
    pa.float64(): "double",
}


def hive_type(arrow_type: pa.DataType) -> str:
    """The Hive/Athena type a Parquet column of ``arrow_type`` reads as."""
    if arrow_type in _SCALARS:
        return _SCALARS[arrow_type]
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_list(arrow_type):
        return f"array<{hive_type(arrow_type.value_type)}>"
    if pa.types.is_struct(arrow_type):
        fields = ",".join(f"{f.name}:{hive_type(f.type)}" for f in arrow_type)
        return f"struct<{fields}>"
    raise TypeError(f"no Hive type for {arrow_type}")


def athena_ddl(location: str, table: str = "nemo_turns", first_day: str = "2026-01-01") -> str:
    """``CREATE EXTERNAL TABLE`` over the turn log at ``location``
    (``s3://bucket/prefix``); days projected from ``first_day`` to today."""
    if not location.startswith("s3://"):
        raise ValueError("the turn log's location must be s3://bucket/prefix")
    if not table.replace("_", "").isalnum():
        raise ValueError("the table name must be letters, digits and underscores")
    location = location.rstrip("/") + "/"
    columns = ",\n".join(
        f"  `{f.name}` {hive_type(f.type)}" for f in TURN_LOG_SCHEMA if f.name not in PARTITION_COLUMNS
    )
    return f"""CREATE EXTERNAL TABLE IF NOT EXISTS {table} (
{columns}
)
PARTITIONED BY (`dt` string, `hour` string)
STORED AS PARQUET
LOCATION '{location}'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '{first_day},NOW',
  'projection.hour.type' = 'integer',
  'projection.hour.range' = '0,23',
  'projection.hour.digits' = '2',
  'storage.location.template' = '{location}dt=${{dt}}/hour=${{hour}}/'
);"""
