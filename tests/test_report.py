"""``nemo-router report``: exact numbers from known turns, the window, the
grouping, both output formats, and reading a folder and S3 (moto)."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nemo_turnlog import TURN_LOG_SCHEMA, LocalParquetSink, S3ParquetSink, TurnRecord, read_turn_log, records_to_table
from nemo_turnlog.report import build_report, format_table, main, nearest_rank, parse_since

NOW = datetime(2025, 1, 31, 9, 0, tzinfo=timezone.utc)
HOUR_S = 3600.0


def turn(request_id: str, minutes_ago: float, **fields) -> TurnRecord:
    values = {
        "model_group": "voice-fast", "endpoint": "ep-a", "provider": "openai", "model": "m", "streamed": True,
        "status": "ok", "http_status": 200, "error_type": None, "ttft_s": 0.1, "total_s": 0.5,
        "prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2, "fallback_count": 0,
    }  # fmt: skip
    return TurnRecord(request_id=request_id, timestamp=NOW - timedelta(minutes=minutes_ago), **{**values, **fields})


def known_turns() -> list[TurnRecord]:
    return [
        turn("f1", 60, ttft_s=0.1, total_s=0.4, prompt_tokens=10, completion_tokens=20),  # exactly at the window's edge
        turn("f2", 50, ttft_s=0.2, total_s=0.5, fallback_count=1, prompt_tokens=10, completion_tokens=30),
        turn("f3", 40, endpoint="ep-b", ttft_s=0.3, total_s=0.9, prompt_tokens=5, completion_tokens=5),
        turn("f4", 30, endpoint="ep-b", ttft_s=0.4, total_s=1.2, prompt_tokens=5, completion_tokens=10),
        turn("f5", 20, endpoint=None, status="error", http_status=502, error_type="AllAttemptsFailed", ttft_s=None,
             total_s=2.0, fallback_count=1, prompt_tokens=None, completion_tokens=None, total_tokens=None),
        turn("f6", 10, status="cancelled", ttft_s=0.05, total_s=0.1, prompt_tokens=3, completion_tokens=1),
        turn("s1", 5, model_group="voice-smart", endpoint="ep-c", ttft_s=0.8, total_s=3.0,
             prompt_tokens=100, completion_tokens=200),
        turn("s0", 120, model_group="voice-smart", endpoint="ep-c", status="error", http_status=504,
             ttft_s=5.0, total_s=9.0, prompt_tokens=7, completion_tokens=0),  # two hours ago
    ]  # fmt: skip


EXPECTED_LAST_HOUR = [
    {"model_group": "voice-fast", "turns": 6, "errors": 1, "error_rate": 1 / 6,
     # TTFT of 5 turns (f5 had none): rank ceil(2.5) = 3 -> 0.2 s; rank 5 -> 0.4 s.
     "ttft_p50_ms": 200.0, "ttft_p99_ms": 400.0,
     # totals of 6 turns: rank 3 -> 0.5 s; rank 6 -> 2.0 s.
     "total_p50_ms": 500.0, "total_p99_ms": 2000.0,
     "fallbacks": 2, "prompt_tokens": 33, "completion_tokens": 66, "cost_usd": None},
    {"model_group": "voice-smart", "turns": 1, "errors": 0, "error_rate": 0.0,
     "ttft_p50_ms": 800.0, "ttft_p99_ms": 800.0, "total_p50_ms": 3000.0, "total_p99_ms": 3000.0,
     "fallbacks": 0, "prompt_tokens": 100, "completion_tokens": 200, "cost_usd": None},
]  # fmt: skip


@pytest.fixture
def log_folder(tmp_path):
    LocalParquetSink(tmp_path, "r1").write(known_turns())
    return tmp_path


def run_json(capsys, argv: list[str]) -> list[dict]:
    assert main(argv, now=NOW) == 0
    return json.loads(capsys.readouterr().out)


# --- the numbers ---------------------------------------------------------------


def test_per_model_numbers_over_the_last_hour_are_exact():
    assert build_report(records_to_table(known_turns()), since_s=HOUR_S, by="model", now=NOW) == EXPECTED_LAST_HOUR


def test_since_all_takes_older_turns_in():
    rows = build_report(records_to_table(known_turns()), since_s=None, by="model", now=NOW)
    smart = rows[1]
    assert (smart["turns"], smart["errors"], smart["error_rate"]) == (2, 1, 0.5)
    # Two values: p50 is rank 1, p99 rank 2.
    assert (smart["ttft_p50_ms"], smart["ttft_p99_ms"], smart["total_p99_ms"]) == (800.0, 5000.0, 9000.0)
    last_20_min = build_report(records_to_table(known_turns()), since_s=20 * 60, by="model", now=NOW)
    assert last_20_min[0]["turns"] == 2  # f5 on the window's edge, and f6


def test_by_endpoint_puts_turns_nothing_served_last():
    rows = build_report(records_to_table(known_turns()), since_s=HOUR_S, by="endpoint", now=NOW)
    assert [(r["endpoint"], r["turns"]) for r in rows] == [("ep-a", 3), ("ep-b", 2), ("ep-c", 1), (None, 1)]
    ep_a, ep_b, _, unserved = rows
    assert (ep_a["ttft_p50_ms"], ep_a["ttft_p99_ms"], ep_a["total_p99_ms"]) == (100.0, 200.0, 500.0)
    assert (ep_b["ttft_p50_ms"], ep_b["ttft_p99_ms"], ep_b["total_p50_ms"]) == (300.0, 400.0, 900.0)
    assert (unserved["error_rate"], unserved["ttft_p50_ms"], unserved["prompt_tokens"]) == (1.0, None, 0)


def test_cost_is_summed_when_the_log_has_it():
    table = records_to_table(known_turns())
    costs = pa.array([0.25, 0.5, 0.125, 0.125, None, 0.0, 1.5, 2.0])
    table = table.set_column(table.column_names.index("cost_usd"), "cost_usd", costs)
    rows = build_report(table, since_s=HOUR_S, by="model", now=NOW)
    assert [r["cost_usd"] for r in rows] == [1.0, 1.5]
    assert "cost usd" in format_table(rows).splitlines()[0]


def test_an_empty_window_gives_no_rows():
    assert build_report(TURN_LOG_SCHEMA.empty_table(), since_s=HOUR_S, by="model", now=NOW) == []
    assert format_table([]) == "no turns in the selected window"


@given(st.lists(st.integers(-1000, 1000), min_size=1, max_size=200), st.integers(1, 100))
def test_nearest_rank_is_the_smallest_value_with_p_percent_at_or_below(values, percent):
    ordered = sorted(values)
    result = nearest_rank(ordered, percent)
    assert result in values
    assert sum(v <= result for v in values) * 100 >= percent * len(values)
    assert sum(v < result for v in values) * 100 < percent * len(values)


def test_nearest_rank_on_one_to_a_hundred():
    values = list(range(1, 101))
    assert (nearest_rank(values, 50), nearest_rank(values, 99), nearest_rank(values, 100)) == (50, 99, 100)
    assert nearest_rank(list(range(1, 11)), 99) == 10 and nearest_rank([], 50) is None


def test_parse_since():
    assert (parse_since("90s"), parse_since("15m"), parse_since("1h"), parse_since("1.5d")) == (90, 900, 3600, 129600)
    assert parse_since("all") is None
    with pytest.raises(Exception):
        parse_since("5x")


# --- the command ---------------------------------------------------------------


def test_json_from_a_local_folder(log_folder, capsys):
    assert run_json(capsys, [str(log_folder), "--format", "json"]) == EXPECTED_LAST_HOUR  # --since 1h by default
    rows = run_json(capsys, [str(log_folder), "--since", "all", "--by", "endpoint", "--format", "json"])
    assert [(r["endpoint"], r["turns"]) for r in rows] == [("ep-a", 3), ("ep-b", 2), ("ep-c", 2), (None, 1)]


def test_table_from_a_local_folder(log_folder, capsys):
    assert main([str(log_folder), "--since", "1h"], now=NOW) == 0
    header, fast, smart = capsys.readouterr().out.strip().splitlines()
    assert header.split() == (
        "model_group turns errors ttft p50 ms ttft p99 ms total p50 ms total p99 ms fallbacks prompt tok completion tok"
    ).split()
    assert fast.split() == ["voice-fast", "6", "16.7%", "200.0", "400.0", "500.0", "2000.0", "2", "33", "66"]
    assert smart.split()[:3] == ["voice-smart", "1", "0.0%"]
    assert len({len(header), len(fast), len(smart)}) == 1  # aligned


def test_s3_gives_the_same_report_as_a_folder(s3, log_folder, capsys):
    bucket = s3.new_bucket()
    S3ParquetSink(bucket, "turns", "r1", client=s3.client()).write(known_turns())
    for args in (["--format", "json"], ["--since", "all", "--by", "endpoint", "--format", "json"]):
        from_s3 = run_json(capsys, [f"s3://{bucket}/turns", "--endpoint-url", s3.endpoint_url, *args])
        assert from_s3 == run_json(capsys, [str(log_folder), *args])
    assert read_turn_log(f"s3://{bucket}/turns", endpoint_url=s3.endpoint_url).num_rows == 8


def test_unreadable_sources_exit_1_and_bad_arguments_2(s3, tmp_path, capsys):
    assert main([str(tmp_path / "missing")], now=NOW) == 1
    assert "no turn-log folder" in capsys.readouterr().err
    assert main(["s3://no-such-bucket-here/turns", "--endpoint-url", s3.endpoint_url], now=NOW) == 1
    assert "NoSuchBucket" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path), "--since", "soon"])
    assert exit_.value.code == 2


def test_error_rate_is_a_fraction_of_turns():
    (row,) = build_report(records_to_table(known_turns()[:6]), since_s=None, by="model", now=NOW)
    assert math.isclose(row["error_rate"] * row["turns"], row["errors"])


def test_by_key_gives_spend_per_key_and_period(tmp_path, capsys):
    turns = [
        turn("k1", 60 * 24 * 40, api_key_id="trial", cost_usd=0.5),  # December 2024
        turn("k2", 60 * 10, api_key_id="trial", cost_usd=0.25),  # 30 January
        turn("k3", 30, api_key_id="trial", cost_usd=0.125),  # 31 January
        turn("k4", 20, api_key_id="plan", cost_usd=1.0),
        turn("k5", 10, api_key_id=None),
    ]  # fmt: skip
    LocalParquetSink(tmp_path, "r1").write(turns)
    by_month = run_json(capsys, [str(tmp_path), "--since", "all", "--by", "key", "--format", "json"])
    assert [(r["api_key_id"], r["period"], r["turns"], r["cost_usd"]) for r in by_month] == [
        ("plan", "2025-01", 1, 1.0), ("trial", "2024-12", 1, 0.5), ("trial", "2025-01", 2, 0.375), (None, "2025-01", 1, None),
    ]  # fmt: skip
    by_day = run_json(capsys, [str(tmp_path), "--since", "2d", "--by", "key", "--period", "day", "--format", "json"])
    assert [(r["api_key_id"], r["period"], r["cost_usd"]) for r in by_day if r["api_key_id"] == "trial"] == [
        ("trial", "2025-01-30", 0.25), ("trial", "2025-01-31", 0.125),
    ]  # fmt: skip
    assert main([str(tmp_path), "--since", "all", "--by", "key"], now=NOW) == 0
    header, first = capsys.readouterr().out.splitlines()[:2]
    assert header.split()[:3] == ["api_key_id", "period", "turns"] and first.split()[:2] == ["plan", "2025-01"]
