"""The turn log's one schema, and the conversion of records into Arrow.

``TURN_LOG_SCHEMA`` is the single source of truth for the turn log's
columns; writers, sinks and the reader all use it. One row per turn:

======================  ==========================================  ===========================================
column                  type                                        meaning
======================  ==========================================  ===========================================
request_id              string                                      the turn's request id (``x-request-id``)
timestamp               timestamp[us, tz=UTC]                       when the turn started
model_group             string                                      the model group the client asked for
endpoint                string                                      endpoint that served; null if none did
provider                string                                      that endpoint's provider (``openai``, ...)
model                   string                                      upstream model id that served
streamed                bool                                        whether the client asked for a stream
status                  string                                      ``ok`` | ``error`` | ``cancelled``
http_status             int32                                       status code the client got
error_type              string                                      error class name; null when ok
ttft_s                  float64                                     seconds to first token; null if none came
total_s                 float64                                     seconds from turn start to its end
prompt_tokens           int64                                       upstream usage; null if not reported
completion_tokens       int64                                       upstream usage; null if not reported
total_tokens            int64                                       upstream usage; null if not reported
attempts                list<struct<endpoint string,                every upstream attempt, in order;
                        outcome string, duration_s float64,         ``duration_s`` in seconds, ``http_status``
                        http_status int32>>                         null when no response arrived
fallback_count          int32                                       attempts after the first
api_key_id              string                                      id (never the secret) of the client's key
tags                    list<string>                                free-form tags
cost_usd                double                                      catalog price x usage; None when unpriced
cost_estimated          bool                                        tokens estimated (no usage from provider)
gateway_overhead_s      double                                      router time before the first token left the caller
cache_hit               bool                                        served from the response cache
messages_json           string                                      the conversation, only with store_messages (privacy default: off)
hedged                  bool                                        a second endpoint raced the first for the first token
request_notes           list<string>                                parameters a provider adapter dropped or changed
error_detail            string                                      a failed turn's last upstream error, redacted (never sent to the client)
cached_tokens           int64                                       prompt tokens the provider served from its prompt cache; null if not reported
conversation_id         string                                      the call this turn belongs to (header, metadata or user); null: none named
conversation_turn       int32                                       the turn's 1-based index in its conversation (client's or counted)
affinity                string                                      what cache-warm affinity did: ``pinned``, ``no pin``, ``slower by N ms: left X``, ...
dt                      string ``YYYY-MM-DD``                       partition: UTC date of ``timestamp``
hour                    string ``HH``                               partition: UTC hour of ``timestamp``
======================  ==========================================  ===========================================

``dt`` and ``hour`` are derived from ``timestamp`` when a batch is built;
on disk they are the Hive folder names (``dt=2025-01-31/hour=07/``), not
columns inside the files.

Every column is nullable, even ones a valid record always fills: Parquet
files written before a column existed read back with nulls there, and a
dataset is easiest to evolve when old and new files agree on nullability.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from nemo_turnlog.record import TurnRecord

__all__ = ["PARTITION_COLUMNS", "TURN_LOG_SCHEMA", "records_to_table"]

PARTITION_COLUMNS: tuple[str, ...] = ("dt", "hour")

_ATTEMPT_TYPE = pa.struct(
    [
        pa.field("endpoint", pa.string()),
        pa.field("outcome", pa.string()),
        pa.field("duration_s", pa.float64()),
        pa.field("http_status", pa.int32()),
    ]
)

TURN_LOG_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("request_id", pa.string()),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("model_group", pa.string()),
        pa.field("endpoint", pa.string()),
        pa.field("provider", pa.string()),
        pa.field("model", pa.string()),
        pa.field("streamed", pa.bool_()),
        pa.field("status", pa.string()),
        pa.field("http_status", pa.int32()),
        pa.field("error_type", pa.string()),
        pa.field("ttft_s", pa.float64()),
        pa.field("total_s", pa.float64()),
        pa.field("prompt_tokens", pa.int64()),
        pa.field("completion_tokens", pa.int64()),
        pa.field("total_tokens", pa.int64()),
        pa.field("attempts", pa.list_(_ATTEMPT_TYPE)),
        pa.field("fallback_count", pa.int32()),
        pa.field("api_key_id", pa.string()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("cost_usd", pa.float64()),
        pa.field("cost_estimated", pa.bool_()),
        pa.field("gateway_overhead_s", pa.float64()),
        pa.field("cache_hit", pa.bool_()),
        pa.field("messages_json", pa.string()),
        pa.field("hedged", pa.bool_()),
        pa.field("request_notes", pa.list_(pa.string())),
        pa.field("error_detail", pa.string()),
        pa.field("cached_tokens", pa.int64()),
        pa.field("conversation_id", pa.string()),
        pa.field("conversation_turn", pa.int32()),
        pa.field("affinity", pa.string()),
        pa.field("dt", pa.string()),
        pa.field("hour", pa.string()),
    ]
)

# Columns read straight off the record by name; the partition columns are derived.
_RECORD_FIELDS = [f for f in TURN_LOG_SCHEMA if f.name not in PARTITION_COLUMNS]


def _attempts(record: TurnRecord) -> list[dict[str, Any]]:
    return [
        {"endpoint": a.endpoint, "outcome": a.outcome, "duration_s": a.duration_s, "http_status": a.http_status}
        for a in record.attempts
    ]


# Columns whose record value needs reshaping before Arrow can take it.
_EXTRACTORS: dict[str, Callable[[TurnRecord], Any]] = {"attempts": _attempts}


def _column(records: Sequence[TurnRecord], column: pa.Field) -> pa.Array:
    extract = _EXTRACTORS.get(column.name)
    if extract is None:
        values = [getattr(r, column.name) for r in records]
    else:
        values = [extract(r) for r in records]
    return pa.array(values, type=column.type)


def records_to_table(records: Sequence[TurnRecord]) -> pa.Table:
    """Build a table with ``TURN_LOG_SCHEMA`` from records, column by column.

    Aware timestamps in any zone are stored as UTC; naive ones are taken to be
    UTC already. Raises (``ValueError``, ``TypeError`` or an Arrow error) when a
    record does not fit the schema, e.g. a missing timestamp or a string where
    a number belongs.
    """
    arrays = {f.name: _column(records, f) for f in _RECORD_FIELDS}
    timestamps = arrays["timestamp"]
    if timestamps.null_count:
        raise ValueError("every turn record needs a timestamp: it decides the partition")
    # Dropping the zone keeps the UTC values, so formatting needs no tz database.
    utc_wall = timestamps.cast(pa.timestamp("us"))
    arrays["dt"] = pc.strftime(utc_wall, format="%Y-%m-%d")
    arrays["hour"] = pc.strftime(utc_wall, format="%H")
    return pa.Table.from_arrays([arrays[f.name] for f in TURN_LOG_SCHEMA], schema=TURN_LOG_SCHEMA)
