"""A sink that writes turn-log batches to S3 as Hive-partitioned Parquet.

Each batch becomes one object per (dt, hour) it touches::

    s3://<bucket>/<prefix>/dt=YYYY-MM-DD/hour=HH/<replica>-<seq:06d>-<8 hex>.parquet

The same layout as ``LocalParquetSink``'s folder (the partition columns live
in the key, not in the file), so DuckDB, Athena, Spark and ``read_turn_log``
read either.

Why boto3 and in-memory Parquet rather than ``write_dataset`` onto
``pyarrow.fs.S3FileSystem`` (both work against moto): one ``PutObject`` of
a finished body is atomic, so a reader never sees a half-written object and
a failed write leaves no multipart upload behind; the client is boto3's, so
credentials, endpoint, timeouts and retries are the ones every AWS tool
uses and errors are botocore's structured codes, translated once in
``s3_client``; and no process-wide AWS SDK (pyarrow's S3 subsystem) has to
be initialised and finalised inside a Ray replica. A batch is at most a few
thousand rows, so building it in memory costs little.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nemo_turnlog.record import TurnRecord
from nemo_turnlog.s3_client import make_s3_client, s3_errors
from nemo_turnlog.schema import PARTITION_COLUMNS
from nemo_turnlog.sink import as_table, check_replica_id, object_name

__all__ = ["PartitionObject", "S3ParquetSink", "partition_objects"]

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"


@dataclass(frozen=True, slots=True)
class PartitionObject:
    """One Parquet file of a batch: ``key`` relative to the sink's prefix
    (``dt=2025-01-31/hour=07/<name>``), the file's bytes and its row count."""

    key: str
    body: bytes
    num_rows: int


def partition_objects(table: pa.Table, name: str) -> list[PartitionObject]:
    """Split a turn-log table by (dt, hour) into Parquet files called ``name``.

    The partition columns are dropped from the files: Hive layout keeps them
    in the path. Objects come in partition order.
    """
    columns = list(PARTITION_COLUMNS)
    pairs = table.select(columns).group_by(columns).aggregate([]).sort_by([(c, "ascending") for c in columns])
    objects = []
    for dt, hour in zip(pairs["dt"].to_pylist(), pairs["hour"].to_pylist(), strict=True):
        rows = table.filter(pc.and_(pc.equal(table["dt"], dt), pc.equal(table["hour"], hour)))
        buffer = pa.BufferOutputStream()
        pq.write_table(rows.drop_columns(columns), buffer)
        objects.append(PartitionObject(f"dt={dt}/hour={hour}/{name}", buffer.getvalue().to_pybytes(), rows.num_rows))
    return objects


class S3ParquetSink:
    """Writes each batch to ``s3://bucket/prefix/`` as Hive-partitioned Parquet.

    ``replica_id`` starts every object name; a per-sink flush counter and a
    random suffix make names unique across flushes and restarts, so replicas
    sharing a prefix never overwrite each other. ``region`` and
    ``endpoint_url`` (an S3-compatible store) configure the boto3 client;
    credentials come from boto3's normal chain. Pass ``client`` to use a
    client of your own (the sink then leaves closing it to you).

    ``write`` raises ``TurnLogS3Error`` when S3 refuses or cannot be
    reached. A batch spanning two hours is two objects; when the second
    fails, the writer retries the whole batch and the first hour's rows are
    stored twice (detectable by ``request_id``). ``SpoolingSink`` avoids
    that: it keeps each object that failed, under its name, for later.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str,
        replica_id: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        client: Any = None,
    ):
        if not bucket:
            raise ValueError("bucket must not be empty")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.replica_id = check_replica_id(replica_id)
        self.endpoint_url = endpoint_url
        self._owns_client = client is None
        self._client = make_s3_client(region=region, endpoint_url=endpoint_url) if client is None else client
        self._flush_seq = itertools.count()

    @property
    def url(self) -> str:
        """``s3://bucket/prefix``: what ``read_turn_log`` takes to read it back."""
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def encode(self, batch: pa.Table | Sequence[TurnRecord], name: str | None = None) -> list[PartitionObject]:
        """The batch as this flush's objects, one per partition, called
        ``<name>.parquet`` if ``name`` is given (else a fresh name); no I/O."""
        table = as_table(batch)
        if table.num_rows == 0:
            return []
        seq = next(self._flush_seq)
        filename = f"{check_replica_id(name)}.parquet" if name is not None else object_name(self.replica_id, seq)
        return partition_objects(table, filename)

    def put(self, obj: PartitionObject) -> None:
        """Upload one object to ``<prefix>/<obj.key>``; raises ``TurnLogS3Error``.

        Uploading the same object again overwrites it: no duplicate rows.
        """
        with s3_errors("PutObject"):
            self._client.put_object(
                Bucket=self.bucket, Key=self.object_key(obj.key), Body=obj.body, ContentType=PARQUET_CONTENT_TYPE
            )

    def write(self, batch: pa.Table | Sequence[TurnRecord], name: str | None = None) -> None:
        for obj in self.encode(batch, name):
            self.put(obj)

    def object_key(self, key: str) -> str:
        """The full S3 key of a key relative to the prefix."""
        return f"{self.prefix}/{key}" if self.prefix else key

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __repr__(self) -> str:
        # Never the client: its repr is harmless today, but it holds credentials.
        return f"S3ParquetSink(url={self.url!r}, replica_id={self.replica_id!r}, endpoint_url={self.endpoint_url!r})"
