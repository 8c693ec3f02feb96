"""The spend ledger beside a turn log: admin top-ups of keys' credit, and
each key's spend read back from the turn log.

    store = LedgerStore("./turnlog-data")            # or "s3://bucket/prefix"
    store.append(LedgerEntry.top_up("trial", 5.0))   # one small Parquet file, written at once
    store.read()                                     # every entry, oldest first
    read_spend("./turnlog-data", since=...)          # [SpendRow], turns with a key and a cost

Entries live in ``<turn log>/_ledger/`` in the same storage as the turn log
(a local folder or an S3 prefix): one Parquet file per entry, named by its
time and a random id, so writers never collide and nothing is rewritten. The
leading ``_`` keeps the turn log's readers out of it (Arrow's dataset
discovery skips ``_`` and ``.`` names; the S3 reader takes only
``dt=/hour=`` keys), as Delta Lake keeps ``_delta_log`` inside its table.
"""

from __future__ import annotations

import io
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from nemo_turnlog.reader import read_turn_log
from nemo_turnlog.s3_client import make_s3_client, s3_errors, split_s3_url

__all__ = ["LEDGER_FOLDER", "LEDGER_SCHEMA", "LedgerEntry", "LedgerStore", "SpendRow", "read_spend"]

LEDGER_FOLDER = "_ledger"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
LEDGER_SCHEMA = pa.schema(
    [
        pa.field("entry_id", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("key_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # "top_up"
        pa.field("amount_usd", pa.float64(), nullable=False),
    ]
)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    entry_id: str
    timestamp: datetime
    key_id: str
    kind: str
    amount_usd: float

    @classmethod
    def top_up(cls, key_id: str, amount_usd: float, at: datetime | None = None) -> "LedgerEntry":
        return cls(uuid.uuid4().hex, at or datetime.now(timezone.utc), key_id, "top_up", amount_usd)


class SpendRow(NamedTuple):
    """One priced turn of a key, from the turn log."""

    key_id: str
    cost_usd: float
    at_s: float  # the turn's timestamp, Unix s
    request_id: str
    timestamp_us: int


class LedgerStore:
    """Top-ups beside the turn log at ``source`` (a folder or ``s3://bucket/prefix``)."""

    def __init__(self, source: str | Path, *, region: str | None = None, endpoint_url: str | None = None, client: Any = None):
        self._s3 = isinstance(source, str) and source.startswith("s3://")
        if self._s3:
            bucket, prefix = split_s3_url(source)
            self._bucket, self._prefix = bucket, f"{prefix}/{LEDGER_FOLDER}/" if prefix else f"{LEDGER_FOLDER}/"
            self._client = client if client is not None else make_s3_client(region=region, endpoint_url=endpoint_url)
        else:
            self._folder = Path(source) / LEDGER_FOLDER

    def append(self, entry: LedgerEntry) -> None:
        """Store one entry durably (raises ``OSError`` / ``TurnLogS3Error`` if it cannot)."""
        name = f"{entry.timestamp.strftime('%Y%m%dT%H%M%S%fZ')}-{entry.entry_id}.parquet"
        sink = io.BytesIO()
        pq.write_table(pa.Table.from_pylist([_row(entry)], schema=LEDGER_SCHEMA), sink)
        if self._s3:
            with s3_errors("PutObject"):
                self._client.put_object(Bucket=self._bucket, Key=self._prefix + name, Body=sink.getvalue())
            return
        self._folder.mkdir(parents=True, exist_ok=True)
        hidden = self._folder / f".{name}"  # renamed into place whole
        hidden.write_bytes(sink.getvalue())
        os.replace(hidden, self._folder / name)

    def read(self) -> list[LedgerEntry]:
        """Every entry, oldest first."""
        tables = [pq.read_table(io.BytesIO(blob)) for blob in self._blobs()]
        rows = [row for table in tables for row in table.cast(LEDGER_SCHEMA).to_pylist()]
        return sorted((LedgerEntry(**row) for row in rows), key=lambda e: (e.timestamp, e.entry_id))

    def _blobs(self) -> list[bytes]:
        if not self._s3:
            if not self._folder.is_dir():
                return []
            return [p.read_bytes() for p in sorted(self._folder.glob("*.parquet")) if not p.name.startswith(".")]
        blobs = []
        with s3_errors("ListObjectsV2"):
            pages = list(self._client.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=self._prefix))
        for page in pages:
            for item in page.get("Contents", []):
                if item["Key"].endswith(".parquet"):
                    with s3_errors("GetObject"):
                        blobs.append(self._client.get_object(Bucket=self._bucket, Key=item["Key"])["Body"].read())
        return blobs


def read_spend(source: str | Path, *, since: datetime | None = None, region: str | None = None,
               endpoint_url: str | None = None, client: Any = None) -> list[SpendRow]:
    """Every turn with a key and a cost in the turn log at ``source`` (from ``since``)."""
    table = read_turn_log(source, since=since, region=region, endpoint_url=endpoint_url, client=client,
                          columns=("request_id", "timestamp", "api_key_id", "cost_usd"))
    rows = []
    for row in table.to_pylist():
        if row["api_key_id"] is None or not row["cost_usd"]:
            continue
        moment: datetime = row["timestamp"]
        timestamp_us = (moment - _EPOCH) // timedelta(microseconds=1)
        rows.append(SpendRow(row["api_key_id"], row["cost_usd"], moment.timestamp(), row["request_id"] or "", timestamp_us))
    return rows


def _row(entry: LedgerEntry) -> dict:
    return {"entry_id": entry.entry_id, "timestamp": entry.timestamp, "key_id": entry.key_id,
            "kind": entry.kind, "amount_usd": entry.amount_usd}
