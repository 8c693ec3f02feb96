"""The README's ways of querying the turn log, run for real: its DuckDB
query over a turn log the router's own sink wrote (a local folder: DuckDB's
S3 support is an extension it downloads, which tests do not), and the
Athena DDL made from the schema. Pure: no Ray, no network."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from nemo_turnlog import LocalParquetSink, TurnRecord
from nemo_turnlog.athena import athena_ddl, hive_type
from nemo_turnlog.report import add_arguments, run
from nemo_turnlog.schema import PARTITION_COLUMNS, TURN_LOG_SCHEMA

README = Path(__file__).resolve().parent.parent / "README.md"
T0 = datetime(2026, 11, 29, 9, 0, tzinfo=timezone.utc)


def record(i: int, group: str, endpoint: str, ttft_s: float, status: str = "ok", cost: float = 0.001) -> TurnRecord:
    return TurnRecord(
        request_id=f"r{i}", timestamp=T0 + timedelta(minutes=i), model_group=group, endpoint=endpoint,
        provider="openai", model="m", streamed=True, status=status, http_status=200 if status == "ok" else 502,
        error_type=None, ttft_s=ttft_s, total_s=ttft_s * 3, prompt_tokens=10, completion_tokens=5, total_tokens=15,
        attempts=[], fallback_count=0, api_key_id="k", cost_usd=cost,
    )


def readme_duckdb_query() -> str:
    blocks = re.findall(r"```sql\n(.*?)```", README.read_text(), flags=re.S)
    [query] = [b for b in blocks if "read_parquet" in b]
    return query


def test_the_readmes_duckdb_query_reads_what_the_sink_wrote(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    sink = LocalParquetSink(tmp_path, "replica-a")
    # 90 turns over three hours (three partitions): 60 on a, 30 on b, 3 of b's failed.
    sink.write([record(i, "voice", "a", 0.05 + i / 10_000) for i in range(0, 180, 3)])
    sink.write([record(i, "voice", "b", 0.2, status="upstream_error" if i < 9 else "ok") for i in range(1, 180, 6)])
    query = readme_duckdb_query().replace("s3://YOUR-BUCKET/turnlog", str(tmp_path))
    rows = duckdb.sql(query).fetchall()
    assert [row[:3] for row in rows] == [("voice", "a", 60), ("voice", "b", 30)]
    a, b = rows
    ttfts = sorted(0.05 + i / 10_000 for i in range(0, 180, 3))
    assert a[3] == round((ttfts[29] + ttfts[30]) / 2 * 1000)  # the median, in ms
    assert a[5] == 0 and b[5] == 2  # i = 1 and 7 failed among b's
    assert a[6] == pytest.approx(0.06) and b[6] == pytest.approx(0.03)
    assert len({p.parent.name for p in tmp_path.rglob("*.parquet")}) == 3  # hour=09,10,11


def test_the_athena_ddl_has_every_column_quoted_with_its_type():
    ddl = athena_ddl("s3://my-turns/turnlog")
    columns = [f for f in TURN_LOG_SCHEMA if f.name not in PARTITION_COLUMNS]
    for field in columns:
        assert f"  `{field.name}` {hive_type(field.type)}" in ddl
    assert "  `timestamp` timestamp," in ddl
    assert "`attempts` array<struct<endpoint:string,outcome:string,duration_s:double,http_status:int>>" in ddl
    assert "PARTITIONED BY (`dt` string, `hour` string)" in ddl
    assert "LOCATION 's3://my-turns/turnlog/'" in ddl
    assert "'storage.location.template' = 's3://my-turns/turnlog/dt=${dt}/hour=${hour}/'" in ddl
    assert ddl.count("\n  `") == len(columns)


@pytest.mark.parametrize(("arrow_type", "hive"), [
    (pa.string(), "string"), (pa.int32(), "int"), (pa.int64(), "bigint"), (pa.float64(), "double"),
    (pa.bool_(), "boolean"), (pa.timestamp("us", tz="UTC"), "timestamp"), (pa.list_(pa.string()), "array<string>"),
])  # fmt: skip
def test_hive_types(arrow_type, hive):
    assert hive_type(arrow_type) == hive
    with pytest.raises(TypeError):
        hive_type(pa.float16())


def test_the_report_prints_the_ddl_for_an_s3_turn_log_only(capsys):
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["s3://my-turns/turnlog", "--athena-ddl"]), now=T0) == 0
    out = capsys.readouterr().out
    assert out.startswith("CREATE EXTERNAL TABLE IF NOT EXISTS nemo_turns") and "'2026-11-01,NOW'" in out
    assert run(parser.parse_args(["./turnlog-data", "--athena-ddl"]), now=T0) == 1
    with pytest.raises(ValueError):
        athena_ddl("s3://b/p", table="x; DROP")
