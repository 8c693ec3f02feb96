"""Reads a turn log back as one Arrow table: a local folder or ``s3://bucket/prefix``."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from nemo_turnlog.s3_client import make_s3_client, s3_errors, split_s3_url
from nemo_turnlog.schema import PARTITION_COLUMNS, TURN_LOG_SCHEMA

__all__ = ["read_turn_log"]

# Explicit string types: left to inference, Hive partitioning would read
# ``hour=07`` as the integer 7.
_PARTITIONING = ds.partitioning(
    pa.schema([TURN_LOG_SCHEMA.field(name) for name in PARTITION_COLUMNS]),
    flavor="hive",
)
# A turn-log object's key below the prefix; hidden names are skipped.
_KEY = re.compile(r"dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/(?![._])[^/]+\.parquet")
_DOWNLOAD_THREADS = 8


def read_turn_log(
    source: str | Path,
    *,
    since: datetime | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    client: Any = None,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """Every row of the turn log at ``source`` with ``TURN_LOG_SCHEMA``'s
    columns, in its order; only rows with ``timestamp >= since`` if given.
    ``columns``: only these (in the schema's order), and only they are read.

    ``source`` is a local folder or ``s3://bucket/prefix``; for S3,
    ``region`` and ``endpoint_url`` (an S3-compatible store) configure a
    boto3 client with boto3's normal credentials, or pass ``client``.
    ``since`` also skips whole ``dt=/hour=`` partitions before it.

    ``dt`` and ``hour`` come from the folder names (or keys), as strings.
    Files written before a column existed read back with nulls in it.
    Hidden files (``.`` or ``_`` prefix, e.g. files still being written) are
    skipped. A missing or empty folder or prefix gives an empty table; S3
    errors raise ``TurnLogS3Error``.
    """
    since = _as_utc(since)
    schema = TURN_LOG_SCHEMA if columns is None else pa.schema([f for f in TURN_LOG_SCHEMA if f.name in set(columns)])
    if isinstance(source, str) and source.startswith("s3://"):
        client = client if client is not None else make_s3_client(region=region, endpoint_url=endpoint_url)
        return _read_s3(client, *split_s3_url(source), since, schema)
    return _read_folder(Path(source), since, schema)


def _read_folder(root: Path, since: datetime | None, schema: pa.Schema = TURN_LOG_SCHEMA) -> pa.Table:
    if not root.is_dir():
        return schema.empty_table()
    dataset = ds.dataset(root, schema=TURN_LOG_SCHEMA, format="parquet", partitioning=_PARTITIONING)
    if since is None:
        return dataset.to_table(columns=schema.names)
    dt, hour = _partition_of(since)
    in_partitions = (ds.field("dt") > dt) | ((ds.field("dt") == dt) & (ds.field("hour") >= hour))
    return dataset.to_table(columns=schema.names, filter=in_partitions & (ds.field("timestamp") >= _timestamp(since)))


def _read_s3(client: Any, bucket: str, prefix: str, since: datetime | None, schema: pa.Schema = TURN_LOG_SCHEMA) -> pa.Table:
    base = f"{prefix}/" if prefix else ""
    listing = {"Bucket": bucket, "Prefix": base}
    if since is not None:
        # Keys sort by dt, then hour: listing can start at since's partition.
        listing["StartAfter"] = base + "dt={}/hour={}/".format(*_partition_of(since))
    wanted = []
    with s3_errors("ListObjectsV2"):
        for page in client.get_paginator("list_objects_v2").paginate(**listing):
            for item in page.get("Contents", []):
                match = _KEY.fullmatch(item["Key"][len(base) :])
                if match and (since is None or match.group(1, 2) >= _partition_of(since)):
                    wanted.append((item["Key"], match.group(1), match.group(2)))
    if not wanted:
        return schema.empty_table()
    # The timestamp filter below needs its column even when it is not asked for.
    read_schema = schema if since is None or "timestamp" in schema.names else pa.schema([*schema, TURN_LOG_SCHEMA.field("timestamp")])

    def fetch(entry: tuple[str, str, str]) -> pa.Table:
        key, dt, hour = entry
        with s3_errors("GetObject"):
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        parquet = pq.ParquetFile(pa.BufferReader(body))
        present = [name for name in read_schema.names if name in parquet.schema_arrow.names]
        return _conform(parquet.read(columns=present), dt, hour, read_schema)

    with ThreadPoolExecutor(max_workers=_DOWNLOAD_THREADS) as pool:
        table = pa.concat_tables(list(pool.map(fetch, wanted)))
    if since is not None:
        table = table.filter(pc.greater_equal(table["timestamp"], _timestamp(since)))
    return table.select(schema.names)


def _conform(table: pa.Table, dt: str, hour: str, schema: pa.Schema = TURN_LOG_SCHEMA) -> pa.Table:
    """One file's rows with exactly the schema's columns, the partition's
    values filled in, and nulls for columns the file predates."""
    columns = []
    for field in schema:
        if field.name in PARTITION_COLUMNS:
            value = {"dt": dt, "hour": hour}[field.name]
            columns.append(pa.array([value] * table.num_rows, type=field.type))
        elif field.name in table.column_names:
            columns.append(table[field.name].cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _as_utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)  # naive times are UTC, as in records


def _partition_of(moment: datetime) -> tuple[str, str]:
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%d"), utc.strftime("%H")


def _timestamp(moment: datetime) -> pa.Scalar:
    return pa.scalar(moment, type=TURN_LOG_SCHEMA.field("timestamp").type)
