"""Conversations in the turn log and its exports: the columns (and older
files without them), Langfuse's sessionId, the Datadog tag, and
``nemo-router report --conversation`` / ``--by conversation``."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.dataset as ds

from nemo_turnlog import TURN_LOG_SCHEMA, LocalParquetSink, TurnRecord, read_turn_log, records_to_table
from nemo_turnlog.datadog import datadog_distributions, datadog_log
from nemo_turnlog.langfuse import langfuse_events
from nemo_turnlog.report import main

NOW = datetime(2025, 1, 31, 9, 0, tzinfo=timezone.utc)


def turn(request_id: str, seconds_ago: float, **fields) -> TurnRecord:
    values = {
        "model_group": "voice-fast", "endpoint": "ep-a", "provider": "openai", "model": "m", "streamed": True,
        "status": "ok", "http_status": 200, "error_type": None, "ttft_s": 0.1, "total_s": 0.5,
        "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "fallback_count": 0,
    }  # fmt: skip
    return TurnRecord(request_id=request_id, timestamp=NOW - timedelta(seconds=seconds_ago), **{**values, **fields})


def call_turns() -> list[TurnRecord]:
    return [
        turn("c1-1", 50, conversation_id="call-1", conversation_turn=1, ttft_s=0.20, affinity="no pin", cost_usd=0.001),
        turn("c1-3", 30, conversation_id="call-1", conversation_turn=3, ttft_s=0.90, endpoint="ep-b", fallback_count=1, cached_tokens=8,
             affinity="slower by 400 ms: left ep-a", cost_usd=0.002),
        turn("c1-2", 40, conversation_id="call-1", conversation_turn=2, ttft_s=0.10, affinity="pinned", cost_usd=0.0005),
        turn("c2-1", 20, conversation_id="call-2", conversation_turn=1, ttft_s=0.05),
        turn("c2-2", 10, conversation_id="call-2", conversation_turn=2, ttft_s=None, status="error", http_status=502),
        turn("lone", 5),
    ]  # fmt: skip


def test_the_columns_round_trip_and_older_files_read_with_nulls(tmp_path):
    LocalParquetSink(tmp_path, "new").write(call_turns())
    # A file written before the conversation columns existed, in the same partition.
    old_schema = pa.schema([f for f in TURN_LOG_SCHEMA if f.name not in ("conversation_id", "conversation_turn", "affinity", "cached_tokens")])
    old = records_to_table([turn("old", 1)]).select([f.name for f in old_schema])
    ds.write_dataset(old, tmp_path, format="parquet", partitioning=["dt", "hour"], partitioning_flavor="hive",
                     basename_template="old-{i}.parquet", existing_data_behavior="overwrite_or_ignore")
    rows = {r["request_id"]: r for r in read_turn_log(tmp_path).to_pylist()}
    assert rows["c1-3"]["conversation_id"] == "call-1" and rows["c1-3"]["conversation_turn"] == 3
    assert rows["c1-3"]["affinity"] == "slower by 400 ms: left ep-a"
    assert rows["old"]["conversation_id"] is None and rows["old"]["conversation_turn"] is None
    assert rows["old"]["cached_tokens"] is None and rows["c1-3"]["cached_tokens"] == 8
    assert rows["lone"]["conversation_id"] is None


def test_a_call_is_one_langfuse_session():
    trace, generation = langfuse_events(call_turns()[0], now=NOW)
    assert trace["body"]["sessionId"] == "call-1" and trace["body"]["metadata"]["conversation_turn"] == 1
    assert generation["body"]["metadata"]["conversation_id"] == "call-1"
    assert "sessionId" not in langfuse_events(turn("lone", 1), now=NOW)[0]["body"]


def test_the_conversation_is_a_datadog_log_tag_but_not_a_metric_tag():
    record = call_turns()[0]
    log = datadog_log(record, service="s", hostname="h")
    assert "conversation_id:call-1" in log["ddtags"].split(",")
    assert log["turn"]["conversation_turn"] == 1 and log["turn"]["affinity"] == "no pin"
    series = datadog_distributions([record], hostname="h", now_s=0)["series"]
    assert all(not t.startswith("conversation_id:") for s in series for t in s["tags"])
    assert "conversation_id" not in datadog_log(turn("lone", 1), service="s", hostname="h")["ddtags"]


def test_report_prints_one_call_turn_by_turn(tmp_path, capsys):
    LocalParquetSink(tmp_path, "r").write(call_turns())
    assert main([str(tmp_path), "--since", "all", "--conversation", "call-1"], now=NOW) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "conversation call-1: 3 turns"
    assert lines[1].split()[:6] == ["time", "(UTC)", "turn", "endpoint", "ttft", "ms"]
    body = [line.split() for line in lines[2:]]
    assert [cells[1] for cells in body] == ["1", "2", "3"]  # in turn order, whatever the file order
    third = body[2]
    assert third[2] == "ep-b" and third[3] == "900.0" and third[4] == "500.0" and third[5:7] == ["10", "5"]
    assert third[7] == "8" and third[8] == "0.002000" and third[9] == "1" and third[10] == "ok"
    assert body[0][7] == "-"  # no cached tokens reported
    assert "slower by 400 ms: left ep-a" in lines[4]


def test_report_json_for_one_call_and_an_unknown_call(tmp_path, capsys):
    LocalParquetSink(tmp_path, "r").write(call_turns())
    main([str(tmp_path), "--since", "all", "--conversation", "call-2", "--format", "json"], now=NOW)
    rows = json.loads(capsys.readouterr().out)
    assert [(r["turn"], r["status"], r["ttft_ms"]) for r in rows] == [(1, "ok", 50.0), (2, "error", None)]
    main([str(tmp_path), "--since", "all", "--conversation", "nope"], now=NOW)
    assert "no turns of conversation 'nope'" in capsys.readouterr().out


def test_report_by_conversation_gives_per_call_percentiles_and_the_slowest_turn(tmp_path, capsys):
    LocalParquetSink(tmp_path, "r").write(call_turns())
    main([str(tmp_path), "--since", "all", "--by", "conversation", "--format", "json"], now=NOW)
    rows = json.loads(capsys.readouterr().out)
    assert rows[0] == {
        "conversation_id": "call-1", "turns": 3, "errors": 0, "ttft_p50_ms": 200.0, "ttft_p99_ms": 900.0,
        "slowest_turn": 3, "slowest_ttft_ms": 900.0, "slowest_endpoint": "ep-b", "cost_usd": 0.0035,
    }  # fmt: skip
    assert rows[1]["conversation_id"] == "call-2" and rows[1]["errors"] == 1 and rows[1]["cost_usd"] is None
    assert len(rows) == 2  # the turn without a conversation is left out
    main([str(tmp_path), "--since", "all", "--by", "conversation"], now=NOW)
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["conversation", "turns"] and table[1].split()[:6] == ["call-1", "3", "0", "200.0", "900.0", "3"]


def test_report_by_conversation_respects_the_window(tmp_path, capsys):
    LocalParquetSink(tmp_path, "r").write(call_turns())
    main([str(tmp_path), "--since", "25s", "--by", "conversation", "--format", "json"], now=NOW)
    assert [r["conversation_id"] for r in json.loads(capsys.readouterr().out)] == ["call-2"]
