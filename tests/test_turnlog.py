"""The turn log without Ray: records to Parquet and back, the writer's
batching, retries and bounds, and ``import logging`` staying the stdlib's."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from nemo_turnlog import (
    PARTITION_COLUMNS,
    TURN_LOG_SCHEMA,
    AttemptRecord,
    LocalParquetSink,
    TurnLogSink,
    TurnLogWriter,
    TurnRecord,
    read_turn_log,
    records_to_table,
)

REPO = Path(__file__).resolve().parents[1]
HOUR_07 = datetime(2025, 1, 31, 7, 15, tzinfo=timezone.utc)
HOUR_08 = datetime(2025, 1, 31, 8, 5, tzinfo=timezone.utc)
NEVER_S = 3600.0  # an interval long enough that only size or flush() writes


def turn(request_id: str, timestamp: datetime = HOUR_07, **changes) -> TurnRecord:
    record = TurnRecord(
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
        tags=["voice", "eu"],
    )
    return dataclasses.replace(record, **changes)


def wait_until(condition, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def parquet_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.parquet") if not p.name.startswith("."))


class FlakySink:
    """A local sink that raises while ``failing`` is set, and remembers calls."""

    def __init__(self, root: Path, failing: bool = False):
        self.inner = LocalParquetSink(root, "flaky")
        self.failing = failing
        self.calls = 0
        self.closed = False

    def write(self, batch) -> None:
        self.calls += 1
        if self.failing:
            raise OSError("disk full")
        self.inner.write(batch)

    def close(self) -> None:
        self.closed = True


# --- schema ----------------------------------------------------------------


def test_schema_has_a_column_for_every_record_field_plus_the_partitions():
    record_fields = [f.name for f in dataclasses.fields(TurnRecord)]
    assert TURN_LOG_SCHEMA.names == record_fields + list(PARTITION_COLUMNS)
    assert TURN_LOG_SCHEMA.field("timestamp").type == pa.timestamp("us", tz="UTC")


def test_records_to_table_derives_utc_partitions():
    # 00:30 at UTC+2 is 22:30 UTC the day before: partitions follow UTC.
    local = datetime(2025, 2, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    table = records_to_table([turn("a", HOUR_08), turn("b", local)])
    assert table.schema == TURN_LOG_SCHEMA
    assert table.column("dt").to_pylist() == ["2025-01-31", "2025-01-31"]
    assert table.column("hour").to_pylist() == ["08", "22"]
    assert table.column("timestamp")[1].as_py() == datetime(2025, 1, 31, 22, 30, tzinfo=timezone.utc)


def test_records_to_table_rejects_a_record_without_timestamp():
    with pytest.raises(ValueError, match="timestamp"):
        records_to_table([turn("a", timestamp=None)])


# --- sink and reader -------------------------------------------------------


def test_reader_gives_an_empty_table_for_a_missing_or_empty_folder(tmp_path):
    assert read_turn_log(tmp_path / "missing").schema == TURN_LOG_SCHEMA
    assert read_turn_log(tmp_path / "missing").num_rows == 0
    assert read_turn_log(tmp_path).num_rows == 0


def test_reader_skips_hidden_files_still_being_written(tmp_path):
    LocalParquetSink(tmp_path, "r1").write([turn("a")])
    partition = tmp_path / "dt=2025-01-31" / "hour=07"
    (partition / ".r1-000001-deadbeef-0.parquet").write_bytes(b"PAR1 half written")
    assert read_turn_log(tmp_path).column("request_id").to_pylist() == ["a"]


def test_local_sink_is_a_turn_log_sink_and_checks_its_replica_id(tmp_path):
    assert isinstance(LocalParquetSink(tmp_path, "r1"), TurnLogSink)
    for bad in ("a/b", "", ".hidden", "{i}"):
        with pytest.raises(ValueError):
            LocalParquetSink(tmp_path, bad)


# --- writer ----------------------------------------------------------------


def test_round_trip_across_hours_keeps_every_field(tmp_path):
    writer = TurnLogWriter(LocalParquetSink(tmp_path, "replica-a"), flush_interval_s=NEVER_S)
    ids = [f"req-{i}" for i in range(20)]
    for i, request_id in enumerate(ids[:16]):
        writer.emit(turn(request_id, HOUR_07 if i % 2 else HOUR_08))
    writer.flush()
    for request_id in ids[16:]:
        writer.emit(turn(request_id, HOUR_08, status="error", http_status=502, endpoint=None, ttft_s=None, attempts=[], tags=[]))
    writer.flush()
    writer.close()

    table = read_turn_log(tmp_path)
    assert table.schema == TURN_LOG_SCHEMA
    rows = {row["request_id"]: row for row in table.to_pylist()}
    assert len(rows) == table.num_rows == 20 and set(rows) == set(ids)
    assert writer.stats() == {"emitted": 20, "written": 20, "dropped": 0, "invalid": 0, "sink_errors": 0, "buffered": 0}

    first = rows["req-1"]
    assert first["timestamp"] == HOUR_07 and first["timestamp"].tzinfo is not None
    assert (first["dt"], first["hour"]) == ("2025-01-31", "07")
    assert (first["ttft_s"], first["total_s"]) == (0.125, 0.5)
    assert (first["prompt_tokens"], first["completion_tokens"], first["total_tokens"]) == (3, 12, 15)
    assert first["attempts"] == [
        {"endpoint": "sim-503", "outcome": "upstream_5xx", "duration_s": 0.05, "http_status": 503},
        {"endpoint": "sim-backup", "outcome": "ok", "duration_s": 0.45, "http_status": None},
    ]
    assert first["tags"] == ["voice", "eu"] and first["streamed"] is True and first["fallback_count"] == 1
    failed = rows["req-17"]
    assert (failed["status"], failed["http_status"], failed["endpoint"], failed["ttft_s"]) == ("error", 502, None, None)
    assert failed["attempts"] == [] and failed["hour"] == "08"

    files = parquet_files(tmp_path)
    # First flush: one file per hour; second flush: one more for hour 08,
    # beside the first flush's file there, under a different name.
    assert len(files) == 3
    assert len({f.name for f in files if f.parent.name == "hour=08"}) == 2
    assert {f.parent.relative_to(tmp_path).as_posix() for f in files} == {"dt=2025-01-31/hour=07", "dt=2025-01-31/hour=08"}
    assert all(f.name.startswith("replica-a-") for f in files)
    assert not [p for p in tmp_path.rglob(".*")]  # nothing left half-published


def test_reaching_flush_max_records_writes_without_flush(tmp_path):
    writer = TurnLogWriter(LocalParquetSink(tmp_path, "r1"), flush_interval_s=NEVER_S, flush_max_records=5)
    try:
        for i in range(5):
            writer.emit(turn(f"req-{i}"))
        assert wait_until(lambda: read_turn_log(tmp_path).num_rows == 5)
    finally:
        writer.close()


def test_the_interval_writes_a_small_batch(tmp_path):
    writer = TurnLogWriter(LocalParquetSink(tmp_path, "r1"), flush_interval_s=0.05)
    try:
        writer.emit(turn("lonely"))
        assert wait_until(lambda: read_turn_log(tmp_path).num_rows == 1)
    finally:
        writer.close()


def test_a_failing_sink_never_reaches_emit_and_loses_nothing(tmp_path, caplog):
    sink = FlakySink(tmp_path, failing=True)
    writer = TurnLogWriter(sink, flush_interval_s=NEVER_S)
    for i in range(3):
        writer.emit(turn(f"secret-{i}"))
    with caplog.at_level(logging.WARNING, logger="nemo_turnlog"):
        writer.flush()
    assert sink.calls == 1
    assert writer.stats() | {"emitted": 0} == {"emitted": 0, "written": 0, "dropped": 0, "invalid": 0, "sink_errors": 1, "buffered": 3}
    assert "disk full" in caplog.text and "secret" not in caplog.text  # the error, never the records

    writer.emit(turn("secret-3"))
    sink.failing = False
    writer.flush()
    writer.close()
    ids = read_turn_log(tmp_path).column("request_id").to_pylist()
    assert sorted(ids) == [f"secret-{i}" for i in range(4)]
    assert writer.stats() == {"emitted": 4, "written": 4, "dropped": 0, "invalid": 0, "sink_errors": 1, "buffered": 0}


def test_the_buffer_drops_the_oldest_beyond_its_bound(tmp_path):
    sink = FlakySink(tmp_path, failing=True)
    # The size trigger may fire a failing flush in the background; either
    # way the records put back are trimmed to the bound, oldest first.
    writer = TurnLogWriter(sink, flush_interval_s=NEVER_S, flush_max_records=10, max_buffer_records=10)
    for i in range(15):
        writer.emit(turn(f"req-{i:02d}"))
    writer.flush()
    stats = writer.stats()
    assert (stats["emitted"], stats["dropped"], stats["buffered"]) == (15, 5, 10)
    sink.failing = False
    writer.close()
    assert sorted(read_turn_log(tmp_path).column("request_id").to_pylist()) == [f"req-{i:02d}" for i in range(5, 15)]


def test_a_record_that_does_not_fit_is_discarded_alone(tmp_path):
    writer = TurnLogWriter(LocalParquetSink(tmp_path, "r1"), flush_interval_s=NEVER_S)
    writer.emit(turn("good-1"))
    writer.emit(turn("bad", total_s="slow"))
    writer.emit(turn("good-2"))
    writer.close()
    assert sorted(read_turn_log(tmp_path).column("request_id").to_pylist()) == ["good-1", "good-2"]
    assert writer.stats()["invalid"] == 1 and writer.stats()["written"] == 2


def test_close_writes_what_is_left_and_stops(tmp_path):
    sink = FlakySink(tmp_path)
    before = set(threading.enumerate())
    writer = TurnLogWriter(sink, flush_interval_s=NEVER_S)
    (thread,) = set(threading.enumerate()) - before
    assert thread.daemon
    for i in range(3):
        writer.emit(turn(f"req-{i}"))
    writer.close()
    assert read_turn_log(tmp_path).num_rows == 3 and sink.closed
    assert not thread.is_alive()
    writer.emit(turn("late"))
    writer.close()  # idempotent
    assert writer.stats()["dropped"] == 1 and writer.stats()["buffered"] == 0


def test_emit_inside_a_running_event_loop(tmp_path):
    writer = TurnLogWriter(LocalParquetSink(tmp_path, "r1"), flush_interval_s=NEVER_S, flush_max_records=3)

    async def turns() -> None:
        for i in range(3):
            writer.emit(turn(f"req-{i}"))
            await asyncio.sleep(0)
        deadline = time.monotonic() + 5
        while read_turn_log(tmp_path).num_rows < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    try:
        asyncio.run(turns())
        assert read_turn_log(tmp_path).num_rows == 3
    finally:
        writer.close()


def test_writer_rejects_a_flush_size_beyond_the_buffer(tmp_path):
    with pytest.raises(ValueError):
        TurnLogWriter(LocalParquetSink(tmp_path, "r1"), flush_max_records=10, max_buffer_records=5)


# --- layout ----------------------------------------------------------------


def test_import_logging_from_the_repo_root_is_the_standard_library():
    out = subprocess.run(
        [sys.executable, "-c", "import logging, nemo_turnlog; print(logging.__file__); print(nemo_turnlog.__file__)"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    logging_file, turnlog_file = (Path(p).resolve() for p in out)
    assert not logging_file.is_relative_to(REPO)
    assert turnlog_file == REPO / "logging" / "nemo_turnlog" / "__init__.py"
