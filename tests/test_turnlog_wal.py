"""The turn log's write-ahead log without Ray: a writer that dies before it
flushes loses nothing once another writer replays its segments, a replay
never duplicates, and concurrent replayers claim each dead segment once."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nemo_turnlog import AttemptRecord, LocalParquetSink, S3ParquetSink, TurnLogWriter, TurnRecord, read_turn_log
from nemo_turnlog.record_json import FIELDS, HEADER, decode_header, decode_record, encode_record
from nemo_turnlog.wal import ProcessIdentity, Segment, WriteAheadLog, process_alive, read_segment
from test_turnlog import HOUR_07, turn

REPO = Path(__file__).resolve().parents[1]
NEVER_S = 3600.0  # only size or flush() writes
ME = ProcessIdentity.current()
# This pid with another start time: a process that reused our pid's
# predecessor's number, i.e. the owner is dead.
DEAD = dataclasses.replace(ME, start_cs=ME.start_cs - 12_345)


def turns(prefix: str, count: int) -> list[TurnRecord]:
    # Across two hours, so batches span two partitions.
    return [turn(f"{prefix}-{i:03d}", HOUR_07 + timedelta(minutes=20 * i)) for i in range(count)]


def ids(root: Path) -> list[str]:
    return sorted(read_turn_log(root).column("request_id").to_pylist())


def parquet_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.parquet") if not p.name.startswith("."))


def wal_files(root: Path) -> list[Path]:
    return sorted(root.glob("*.wal"))


def dead_writer(data: Path, wal_dir: Path, writer_id: str = "dead-a") -> TurnLogWriter:
    """A writer whose WAL says it belongs to a dead process; dropping it
    without ``close`` is how it 'dies' (its thread sleeps for an hour)."""
    wal = WriteAheadLog(wal_dir, writer_id, owner=DEAD)
    return TurnLogWriter(LocalParquetSink(data, writer_id), flush_interval_s=NEVER_S, wal=wal)


def replay(data: Path, wal_dir: Path, writer_id: str = "next-b") -> dict[str, int]:
    """Start the next writer on the node, let it replay, close it; its stats."""
    writer = TurnLogWriter(LocalParquetSink(data, writer_id), flush_interval_s=NEVER_S, wal=WriteAheadLog(wal_dir, writer_id))
    writer.flush()
    writer.close()
    return writer.stats()


# --- the record codec -------------------------------------------------------

texts = st.text(max_size=40)  # any code point, lone surrogates and newlines included


@given(
    request_id=texts,
    error_detail=st.none() | texts,
    ttft_s=st.none() | st.floats(allow_nan=False),
    tags=st.lists(texts, max_size=3),
    attempts=st.lists(st.builds(AttemptRecord, texts, texts, st.floats(allow_nan=False), st.none() | st.integers()), max_size=3),
    naive=st.booleans(),
)
def test_a_record_survives_its_json_line_unchanged(request_id, error_detail, ttft_s, tags, attempts, naive):
    timestamp = HOUR_07.replace(tzinfo=None) if naive else HOUR_07
    record = turn(request_id, timestamp, error_detail=error_detail, ttft_s=ttft_s, tags=tags, attempts=attempts)
    line = encode_record(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # one line, whatever the text holds
    assert decode_record(line) == record


def test_a_line_from_another_version_keeps_known_fields_and_defaults_the_rest():
    header = decode_header(HEADER)
    assert header == FIELDS
    line = encode_record(turn("r1", hedged=True))
    newer = decode_record(line.replace(b"[", b'[{"x":1},', 1), ("from_the_future", *FIELDS))
    assert newer == turn("r1", hedged=True)
    older_fields = tuple(name for name in FIELDS if name != "hedged")
    older = b"[" + b",".join(json.dumps(value).encode() for name, value in zip(FIELDS, json.loads(line)) if name != "hedged") + b"]"
    assert decode_record(older, older_fields) == turn("r1")  # the default
    for torn in (line[:30], b'{"request_id": "r1"}', b"[1,2]"):
        with pytest.raises(ValueError):
            decode_record(torn)


# --- a dead writer's records come back once ----------------------------------


def test_a_writer_dropped_without_close_loses_nothing_after_replay(tmp_path):
    data, wal_dir = tmp_path / "log", tmp_path / "log" / "_wal"
    writer = dead_writer(data, wal_dir)
    for record in turns("flushed", 5):
        writer.emit(record)
    writer.flush()  # these reach the sink and leave the WAL
    for record in turns("buffered", 7):
        writer.emit(record)
    assert ids(data) == [f"flushed-{i:03d}" for i in range(5)] and len(wal_files(wal_dir)) == 1
    del writer  # killed: no close, no flush

    stats = replay(data, wal_dir)
    assert ids(data) == [f"buffered-{i:03d}" for i in range(7)] + [f"flushed-{i:03d}" for i in range(5)]
    assert stats["replayed"] == 7 and stats["written"] == 7
    assert not wal_files(wal_dir)


def test_a_crash_between_the_sink_write_and_the_wal_removal_does_not_duplicate(tmp_path, monkeypatch):
    data, wal_dir = tmp_path / "log", tmp_path / "log" / "_wal"
    writer = dead_writer(data, wal_dir)
    monkeypatch.setattr(writer._wal, "remove", lambda segment: None)  # dies right after each write
    for record in turns("r", 6):
        writer.emit(record)
    writer.flush()
    for record in turns("s", 4):
        writer.emit(record)
    writer.flush()
    files_before = parquet_files(data)
    assert len(wal_files(wal_dir)) == 2 and len(ids(data)) == 10

    replay(data, wal_dir)
    assert ids(data) == sorted(r.request_id for r in [*turns("r", 6), *turns("s", 4)])  # each once
    assert parquet_files(data) == files_before  # rewritten in place, under the same names
    assert not wal_files(wal_dir)


def test_a_killed_process_loses_nothing(tmp_path):
    """The real thing: a child process emits, flushes some, and is SIGKILLed."""
    data, wal_dir = tmp_path / "log", tmp_path / "wal"
    child = f"""
import sys, time
sys.path[:0] = [{str(REPO)!r}, {str(REPO / "logging")!r}, {str(Path(__file__).parent)!r}]
from test_turnlog_wal import turns
from nemo_turnlog import LocalParquetSink, TurnLogWriter
from nemo_turnlog.wal import WriteAheadLog
writer = TurnLogWriter(LocalParquetSink({str(data)!r}, "child"), flush_interval_s=3600, wal=WriteAheadLog({str(wal_dir)!r}, "child"))
for record in turns("early", 20):
    writer.emit(record)
writer.flush()
for record in turns("late", 30):
    writer.emit(record)
print("ready", flush=True)
time.sleep(60)
"""
    process = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready"
        assert len(ids(data)) == 20
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL

    stats = replay(data, wal_dir)
    assert ids(data) == sorted(r.request_id for r in [*turns("early", 20), *turns("late", 30)])
    assert stats["replayed"] == 30 and not wal_files(wal_dir)


def test_a_live_owner_is_left_alone_and_a_reused_pid_is_not_alive(tmp_path):
    parent = ProcessIdentity(ME.host, os.getppid(), round(__import__("psutil").Process(os.getppid()).create_time() * 100))
    assert process_alive(ME) and process_alive(parent)
    assert not process_alive(DEAD)  # our pid, another start time
    assert not process_alive(ProcessIdentity(ME.host, 2**22 + 1, 1))  # beyond pid_max: no such process

    for owner, writer_id in [(parent, "alive"), (dataclasses.replace(DEAD, host="other-node"), "elsewhere")]:
        WriteAheadLog(tmp_path, writer_id, owner=owner).append(encode_record(turn(writer_id)))
    for stray in ("notes.wal", f"{ME.host}+1+1+{{i}}.wal", f"{ME.host}+1+1+.hidden.wal"):
        (tmp_path / stray).write_text("not a segment")
    assert WriteAheadLog(tmp_path, "me").claim_orphans() == []
    assert len(wal_files(tmp_path)) == 5  # untouched


def test_a_zombie_owner_is_dead(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    owner = ProcessIdentity(ME.host, process.pid, round(__import__("psutil").Process(process.pid).create_time() * 100))
    deadline = time.monotonic() + 10
    while process_alive(owner) and time.monotonic() < deadline:  # exited but not reaped: a zombie
        time.sleep(0.02)
    assert not process_alive(owner)
    process.wait()


def test_a_torn_last_line_is_skipped_and_counted(tmp_path):
    data, wal_dir = tmp_path / "log", tmp_path / "wal"
    wal = WriteAheadLog(wal_dir, "torn", owner=DEAD)
    for record in turns("r", 3):
        wal.append(encode_record(record))
    wal.append(encode_record(turn("cut"))[:25])  # a machine crash mid-line
    stats = replay(data, wal_dir)
    assert ids(data) == ["r-000", "r-001", "r-002"]
    assert (stats["replayed"], stats["wal_torn"]) == (3, 1)


def test_records_stay_in_the_wal_while_the_sink_fails_and_leave_it_once_written(tmp_path):
    class Flaky(LocalParquetSink):
        failing = True

        def write(self, batch, name=None):
            if self.failing:
                raise OSError("disk full")
            super().write(batch, name)

    data, wal_dir = tmp_path / "log", tmp_path / "wal"
    sink = Flaky(data, "flaky")
    writer = TurnLogWriter(sink, flush_interval_s=NEVER_S, wal=WriteAheadLog(wal_dir, "flaky"))
    for batch in ("a", "b"):
        for record in turns(batch, 3):
            writer.emit(record)
        writer.flush()  # fails: each batch keeps its own segment
    assert len(wal_files(wal_dir)) == 2 and writer.stats()["buffered"] == 6
    sink.failing = False
    writer.close()
    assert len(ids(data)) == 6 and not wal_files(wal_dir)
    assert writer.stats() | {"sink_errors": 0} == {
        "emitted": 6, "written": 6, "dropped": 0, "invalid": 0, "sink_errors": 0, "buffered": 0,
        "replayed": 0, "wal_errors": 0, "wal_torn": 0,
    }


def test_a_wal_that_cannot_be_written_keeps_records_in_memory(tmp_path):
    wal = WriteAheadLog(tmp_path / "wal", "ro")

    def refuse(line):
        raise OSError("read-only file system")

    wal.append = refuse
    writer = TurnLogWriter(LocalParquetSink(tmp_path / "log", "ro"), flush_interval_s=NEVER_S, wal=wal)
    writer.emit(turn("kept"))
    writer.close()
    assert ids(tmp_path / "log") == ["kept"] and writer.stats()["wal_errors"] == 1


# --- concurrent replayers ---------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dead_owners=st.integers(1, 4), segments_each=st.integers(1, 4), replayers=st.integers(2, 5))
def test_concurrent_replayers_claim_each_dead_segment_exactly_once(tmp_path_factory, dead_owners, segments_each, replayers):
    root = tmp_path_factory.mktemp("wal")
    stems = set()
    for owner_index in range(dead_owners):
        owner = ProcessIdentity(ME.host, 900_000 + owner_index, 1)
        wal = WriteAheadLog(root, f"dead{owner_index}", owner=owner)
        for _ in range(segments_each):
            wal.append(encode_record(turn("r")))
            stems.add(wal.rotate().stem)
    live = {ProcessIdentity(ME.host, 800_000 + i, 1) for i in range(replayers)}
    logs = [WriteAheadLog(root, f"live{i}", owner=owner, is_alive=live.__contains__) for i, owner in enumerate(sorted(live, key=lambda o: o.pid))]
    start = threading.Barrier(replayers)
    claims: list[list[Segment]] = [[] for _ in logs]

    def claim(index: int) -> None:
        start.wait()
        claims[index] = logs[index].claim_orphans()

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(replayers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [segment.stem for segments in claims for segment in segments]
    assert sorted(claimed) == sorted(stems)  # every one, none twice
    for log, segments in zip(logs, claims, strict=True):
        assert all(s.path.name.startswith(log.owner.prefix) and read_segment(s)[0] for s in segments)
    # A claimer is alive: nobody takes its segments from it.
    assert all(log.claim_orphans() == [] for log in logs)


# --- S3: a replay overwrites the same object ---------------------------------


def test_an_s3_replay_after_a_crash_overwrites_the_same_keys(s3, tmp_path, monkeypatch):
    bucket = s3.new_bucket()
    wal_dir = tmp_path / "wal"
    writer = TurnLogWriter(
        S3ParquetSink(bucket, "turns", "dead-a", client=s3.client()),
        flush_interval_s=NEVER_S,
        wal=WriteAheadLog(wal_dir, "dead-a", owner=DEAD),
    )
    monkeypatch.setattr(writer._wal, "remove", lambda segment: None)
    for record in turns("r", 4):
        writer.emit(record)
    writer.flush()
    listing = s3.client().list_objects_v2(Bucket=bucket)["Contents"]
    keys_before = sorted(item["Key"] for item in listing)
    assert [key.rsplit("/", 1)[1] for key in keys_before] == ["dead-a-000000.parquet"] * 2  # two hours

    next_writer = TurnLogWriter(
        S3ParquetSink(bucket, "turns", "next-b", client=s3.client()),
        flush_interval_s=NEVER_S,
        wal=WriteAheadLog(wal_dir, "next-b"),
    )
    next_writer.flush()
    next_writer.close()
    listing = s3.client().list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted(item["Key"] for item in listing) == keys_before
    rows = read_turn_log(f"s3://{bucket}/turns", endpoint_url=s3.endpoint_url)
    assert sorted(rows.column("request_id").to_pylist()) == [f"r-{i:03d}" for i in range(4)]
    assert next_writer.stats()["replayed"] == 4 and not wal_files(wal_dir)
