"""The turn log on S3, against a real S3-compatible server on loopback
(moto's server mode): round trips, the key layout, and at-least-once
delivery through the local spool across an S3 outage."""

from __future__ import annotations

import logging
import re
import shutil
import time
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from nemo_turnlog import (
    TURN_LOG_SCHEMA,
    AttemptRecord,
    S3ParquetSink,
    SpoolingSink,
    TurnLogS3Error,
    TurnLogSink,
    TurnLogWriter,
    TurnRecord,
    read_turn_log,
    records_to_table,
)
from nemo_turnlog.testing import FAKE_AWS_ENV, LocalS3Server

HOUR_07 = datetime(2025, 1, 31, 7, 15, tzinfo=timezone.utc)
HOUR_08 = datetime(2025, 1, 31, 8, 5, tzinfo=timezone.utc)
NEVER_S = 3600.0  # only size or flush() writes
KEY = re.compile(r"turns/dt=2025-01-31/hour=0[78]/(?P<replica>[a-z-]+)-(?P<seq>\d{6})-[0-9a-f]{8}\.parquet")


@pytest.fixture
def bucket(s3) -> str:
    return s3.new_bucket()


def turn(request_id: str, timestamp: datetime = HOUR_07) -> TurnRecord:
    return TurnRecord(
        request_id=request_id,
        timestamp=timestamp,
        model_group="voice-fast",
        endpoint="sim-backup",
        provider="openai",
        model="sim-model",
        streamed=True,
        status="ok",
        http_status=200,
        error_type=None,
        ttft_s=0.125,
        total_s=0.5,
        prompt_tokens=3,
        completion_tokens=12,
        total_tokens=15,
        attempts=[AttemptRecord("sim-503", "upstream_5xx", 0.05, 503), AttemptRecord("sim-backup", "ok", 0.45)],
        fallback_count=1,
        api_key_id="key-1",
        tags=["voice"],
    )


def turns(prefix: str, count: int, timestamp: datetime = HOUR_07) -> list[TurnRecord]:
    return [turn(f"{prefix}-{i:03d}", timestamp + timedelta(seconds=i)) for i in range(count)]


def keys(s3, bucket: str) -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def read_ids(s3, bucket: str) -> list[str]:
    return sorted(read_turn_log(f"s3://{bucket}/turns", endpoint_url=s3.endpoint_url).column("request_id").to_pylist())


def spooling_sink(s3, bucket, spool_dir, replica_id="replica-a", **options) -> SpoolingSink:
    # One attempt per call keeps outage tests fast; the defaults retry.
    inner = S3ParquetSink(bucket, "turns", replica_id, client=s3.client(max_attempts=1))
    return SpoolingSink(inner, spool_dir, **{"retry_backoff_s": 0.0, **options})


def wait_until(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def sorted_rows(table: pa.Table) -> list[dict]:
    return table.sort_by("request_id").to_pylist()


# --- S3ParquetSink and the reader -------------------------------------------


def test_round_trip_through_the_writer_keeps_every_row_and_value(s3, bucket):
    records = turns("hour7", 15) + turns("hour8", 10, HOUR_08)
    sink = S3ParquetSink(bucket, "/turns/", "replica-a", endpoint_url=s3.endpoint_url, region="us-east-1")
    assert isinstance(sink, TurnLogSink) and sink.url == f"s3://{bucket}/turns"
    writer = TurnLogWriter(sink, flush_interval_s=NEVER_S)
    for record in records[:20]:
        writer.emit(record)
    writer.flush()
    for record in records[20:]:
        writer.emit(record)
    writer.close()
    assert writer.stats()["written"] == 25

    table = read_turn_log(sink.url, endpoint_url=s3.endpoint_url)
    assert table.schema == TURN_LOG_SCHEMA
    assert sorted_rows(table) == sorted_rows(records_to_table(records))


def test_keys_are_hive_partitioned_and_unique_per_flush_and_replica(s3, bucket):
    a = S3ParquetSink(bucket, "turns", "replica-a", client=s3.client())
    b = S3ParquetSink(bucket, "turns", "replica-b", client=s3.client())
    spans_two_hours = turns("x", 2) + turns("y", 2, HOUR_08)
    for sink in (a, b, a):
        sink.write(spans_two_hours)
    # A restarted replica counts its flushes from zero again: the random part keeps keys apart.
    S3ParquetSink(bucket, "turns", "replica-a", client=s3.client()).write(spans_two_hours)

    found = keys(s3, bucket)
    assert len(found) == 4 * 2  # one object per partition per flush
    matches = [KEY.fullmatch(key) for key in found]
    assert all(matches), found
    assert sorted(m["replica"] for m in matches) == ["replica-a"] * 6 + ["replica-b"] * 2
    assert {m["seq"] for m in matches} == {"000000", "000001"}
    assert len(read_ids(s3, bucket)) == 16


def test_reader_prunes_by_since_and_handles_empty_or_missing(s3, bucket):
    S3ParquetSink(bucket, "turns", "r1", client=s3.client()).write(turns("early", 3) + turns("late", 3, HOUR_08))
    url = f"s3://{bucket}/turns"
    since = HOUR_08 + timedelta(seconds=1)
    table = read_turn_log(url, since=since, endpoint_url=s3.endpoint_url)
    assert sorted(table.column("request_id").to_pylist()) == ["late-001", "late-002"]

    empty = read_turn_log(f"s3://{bucket}/nothing-here", endpoint_url=s3.endpoint_url)
    assert empty.schema == TURN_LOG_SCHEMA and empty.num_rows == 0
    with pytest.raises(TurnLogS3Error) as failure:
        read_turn_log("s3://no-such-bucket-here/turns", endpoint_url=s3.endpoint_url)
    assert (failure.value.status, failure.value.code, failure.value.transient) == (404, "NoSuchBucket", False)


def test_an_unreachable_s3_raises_a_transient_error_without_credentials(s3, bucket, caplog):
    dead = LocalS3Server()  # never started: nothing listens on its port
    sink = S3ParquetSink(bucket, "turns", "r1", client=dead.client(max_attempts=1))
    with pytest.raises(TurnLogS3Error) as failure:
        sink.write([turn("a")])
    assert failure.value.transient and failure.value.status is None
    writer = TurnLogWriter(sink, flush_interval_s=NEVER_S)
    writer.emit(turn("b"))
    with caplog.at_level(logging.DEBUG, logger="nemo_turnlog"):
        writer.flush()
    writer.close()
    assert "S3 PutObject failed" in caplog.text
    assert FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"] not in caplog.text + repr(sink)


# --- SpoolingSink: at-least-once through an outage --------------------------


def test_an_outage_mid_run_spools_then_drains_with_every_row_once(s3, bucket, tmp_path):
    spool_dir = tmp_path / "spool"
    sink = spooling_sink(s3, bucket, spool_dir)
    assert isinstance(sink, TurnLogSink)
    writer = TurnLogWriter(sink, flush_interval_s=NEVER_S)
    emitted = turns("before", 10) + turns("during", 12, HOUR_08) + turns("after", 5, HOUR_08 + timedelta(minutes=5))
    for record in emitted[:10]:
        writer.emit(record)
    writer.flush()
    assert len(read_ids(s3, bucket)) == 10

    s3.stop()
    try:
        for record in emitted[10:22]:
            writer.emit(record)
        writer.flush()
        # S3 is down, yet the batch counts as written: it sits in the spool.
        assert writer.stats()["written"] == 22 and writer.stats()["buffered"] == 0
        assert read_turn_log(spool_dir).num_rows == 12
        writer.flush()  # retrying while S3 is still down keeps the files
        assert sink.stats()["spool_files"] == 1
    finally:
        s3.start()

    for record in emitted[22:]:
        writer.emit(record)
    writer.flush()  # writes the new batch, then drains the spool
    assert sink.stats() | {"s3_errors": 0} == {
        "uploaded": 2, "spooled": 1, "spool_uploaded": 1, "spool_dropped": 0, "spool_dropped_rows": 0,
        "spool_corrupt": 0, "s3_errors": 0, "spool_files": 0, "spool_bytes": 0,
    }  # fmt: skip
    assert not list(spool_dir.rglob("*.parquet"))
    writer.close()
    assert read_ids(s3, bucket) == sorted(r.request_id for r in emitted)  # each once


def test_the_writers_own_thread_spools_and_drains(s3, bucket, tmp_path):
    sink = spooling_sink(s3, bucket, tmp_path / "spool")
    writer = TurnLogWriter(sink, flush_interval_s=0.05)
    emitted = turns("live", 30)
    try:
        s3.stop()
        try:
            for record in emitted[:20]:
                writer.emit(record)
            assert wait_until(lambda: writer.stats()["written"] == 20)
            assert sink.stats()["spooled"] >= 1
        finally:
            s3.start()
        for record in emitted[20:]:
            writer.emit(record)
        assert wait_until(lambda: sink.stats()["spool_files"] == 0 and writer.stats()["written"] == 30)
    finally:
        writer.close()
    assert read_ids(s3, bucket) == sorted(r.request_id for r in emitted)


def test_close_drains_the_spool(s3, bucket, tmp_path):
    sink = spooling_sink(s3, bucket, tmp_path / "spool")
    writer = TurnLogWriter(sink, flush_interval_s=NEVER_S)
    s3.stop()
    try:
        for record in turns("t", 7):
            writer.emit(record)
        writer.flush()
        assert sink.stats()["spool_files"] == 1
    finally:
        s3.start()
    writer.close()
    assert sink.stats()["spool_files"] == 0
    assert read_ids(s3, bucket) == [f"t-{i:03d}" for i in range(7)]


def test_a_spool_left_by_a_closed_replica_is_drained_by_the_next(s3, bucket, tmp_path, caplog):
    spool_dir = tmp_path / "spool"
    s3.stop()
    try:
        writer = TurnLogWriter(spooling_sink(s3, bucket, spool_dir), flush_interval_s=NEVER_S)
        for record in turns("old", 4) + turns("older", 3, HOUR_08):
            writer.emit(record)
        with caplog.at_level(logging.WARNING, logger="nemo_turnlog"):
            writer.close()  # S3 still down: the files stay for the next start
        assert "stay in the spool" in caplog.text
    finally:
        s3.start()
    assert len(list(spool_dir.rglob("*.parquet"))) == 2

    successor = spooling_sink(s3, bucket, spool_dir, replica_id="replica-b")
    assert successor.retry_spooled() == 2
    assert len(read_ids(s3, bucket)) == 7
    assert all("/replica-a-" in key for key in keys(s3, bucket))  # uploaded under their first names


def test_reuploading_a_spooled_file_overwrites_rather_than_duplicates(s3, bucket, tmp_path):
    spool_dir, kept = tmp_path / "spool", tmp_path / "kept"
    s3.stop()
    try:
        sink = spooling_sink(s3, bucket, spool_dir)
        sink.write(turns("dup", 5))
    finally:
        s3.start()
    shutil.copytree(spool_dir, kept)
    assert sink.retry_spooled() == 1
    # A crash between upload and delete: the file is back in the spool.
    shutil.copytree(kept, spool_dir, dirs_exist_ok=True)
    assert sink.retry_spooled() == 1
    assert len(keys(s3, bucket)) == 1 and len(read_ids(s3, bucket)) == 5


def test_the_backoff_sends_writes_straight_to_the_spool(s3, bucket, tmp_path):
    now = [0.0]
    sink = spooling_sink(s3, bucket, tmp_path / "spool", retry_backoff_s=30.0, clock=lambda: now[0])
    s3.stop()
    try:
        sink.write(turns("a", 2))
        sink.write(turns("b", 2))
        assert sink.retry_spooled() == 0  # still backing off: S3 not even asked
        assert (sink.stats()["s3_errors"], sink.stats()["spooled"]) == (1, 2)
    finally:
        s3.start()
    assert sink.retry_spooled() == 0
    now[0] = 30.0
    assert sink.retry_spooled() == 2
    assert len(read_ids(s3, bucket)) == 4


def test_the_spool_is_bounded_dropping_the_oldest_with_a_warning(s3, bucket, tmp_path, caplog):
    dead = LocalS3Server()
    inner = S3ParquetSink(bucket, "turns", "r1", client=dead.client(max_attempts=1))
    one_file = len(inner.encode(turns("probe", 3))[0].body)
    sink = SpoolingSink(inner, tmp_path / "spool", max_spool_bytes=int(one_file * 2.5), retry_backoff_s=0.0)
    with caplog.at_level(logging.WARNING, logger="nemo_turnlog"):
        for batch in range(5):
            sink.write(turns(f"b{batch}", 3))
    stats = sink.stats()
    assert (stats["spooled"], stats["spool_files"], stats["spool_dropped"], stats["spool_dropped_rows"]) == (5, 2, 3, 9)
    assert stats["spool_bytes"] <= one_file * 2.5
    assert sorted(read_turn_log(tmp_path / "spool").column("request_id").to_pylist())[0] == "b3-000"
    assert "dropped the 1 oldest files (3 turn records)" in caplog.text


def test_a_corrupt_spool_file_is_set_aside(s3, bucket, tmp_path):
    spool_dir = tmp_path / "spool"
    bad = spool_dir / "dt=2025-01-31" / "hour=07" / "r1-000000-deadbeef.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not parquet")
    sink = spooling_sink(s3, bucket, spool_dir)
    sink.write(turns("good", 2))
    assert sink.retry_spooled() == 0
    assert sink.stats()["spool_corrupt"] == 1 and bad.with_name(f"_{bad.name}.corrupt").exists()
    assert read_ids(s3, bucket) == ["good-000", "good-001"]
    assert read_turn_log(spool_dir).num_rows == 0  # readers skip the set-aside file too
