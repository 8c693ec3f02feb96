"""The spend ledger beside the turn log: top-ups stored and read back (local
folder and S3), invisible to the turn log's readers; keys' spend read from
the turn log with the refs the live ledger uses to avoid counting a turn twice."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from nemo_turnlog import LocalParquetSink, S3ParquetSink, TurnRecord, read_turn_log
from nemo_turnlog.ledger import LedgerEntry, LedgerStore, read_spend
from nemo_turnlog.testing import AWS_ENV_TO_CLEAR, FAKE_AWS_ENV, LocalS3Server
from router.keys import turn_ref

T0 = datetime(2026, 3, 14, 9, 26, 53, 589793, tzinfo=timezone.utc)


def record(request_id: str, at: datetime, key: str | None = "trial", cost: float | None = 0.25) -> TurnRecord:
    return TurnRecord(
        request_id=request_id, timestamp=at, model_group="g", endpoint="e", provider="openai", model="m",
        streamed=False, status="ok", http_status=200, error_type=None, ttft_s=0.1, total_s=0.2,
        prompt_tokens=1, completion_tokens=2, total_tokens=3, attempts=[], fallback_count=0,
        api_key_id=key, cost_usd=cost,
    )


def test_top_ups_are_stored_beside_the_turn_log_and_read_back(tmp_path):
    LocalParquetSink(tmp_path, "replica-a").write([record("r1", T0)])
    store = LedgerStore(tmp_path)
    assert store.read() == []
    first = LedgerEntry.top_up("trial", 5.0, at=T0)
    second = LedgerEntry.top_up("trial", 2.5, at=T0 + timedelta(seconds=1))
    store.append(second)
    store.append(first)
    assert LedgerStore(tmp_path).read() == [first, second]  # a new store: from storage, oldest first
    assert read_turn_log(tmp_path).num_rows == 1  # the turn log's reader does not see _ledger/


def test_spend_comes_from_priced_turns_of_keys(tmp_path):
    LocalParquetSink(tmp_path, "replica-a").write([
        record("r1", T0),
        record("r2", T0 + timedelta(hours=2), cost=0.5),
        record("anonymous", T0, key=None),
        record("unpriced", T0, cost=None),
    ])
    rows = read_spend(tmp_path)
    assert sorted((r.request_id, r.cost_usd) for r in rows) == [("r1", 0.25), ("r2", 0.5)]
    r1 = next(r for r in rows if r.request_id == "r1")
    assert (r1.request_id, r1.timestamp_us) == turn_ref("r1", T0.timestamp())  # the live charge's ref
    assert [r.request_id for r in read_spend(tmp_path, since=T0 + timedelta(hours=1))] == ["r2"]


def test_the_ledger_works_on_s3_beside_the_turn_log(monkeypatch):
    for name in AWS_ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    for name, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    with LocalS3Server() as s3:
        bucket = s3.new_bucket()
        S3ParquetSink(bucket, "turns", "replica-a", endpoint_url=s3.endpoint_url, region="us-east-1").write([record("r1", T0)])
        url = f"s3://{bucket}/turns"
        entry = LedgerEntry.top_up("trial", 1.25, at=T0)
        LedgerStore(url, endpoint_url=s3.endpoint_url, region="us-east-1").append(entry)
        assert LedgerStore(url, endpoint_url=s3.endpoint_url, region="us-east-1").read() == [entry]
        options = {"endpoint_url": s3.endpoint_url, "region": "us-east-1"}
        assert [r.request_id for r in read_spend(url, **options)] == ["r1"]
        assert [r.request_id for r in read_spend(url, since=T0 - timedelta(minutes=5), **options)] == ["r1"]
        assert read_spend(url, since=T0 + timedelta(minutes=5), **options) == []
        projected = read_turn_log(url, since=T0 - timedelta(minutes=5), columns=["cost_usd", "request_id"], **options)
        assert projected.column_names == ["request_id", "cost_usd"] and projected.num_rows == 1


def test_a_new_keystore_rebuilds_spend_and_top_ups_from_storage(tmp_path):
    """The keystore's class, without Ray: what one incarnation charged and
    topped up, the next one finds in the turn log and the ledger."""
    from deployments.keystore import KeyStore
    from router.config_observability import TurnLogConfig
    from router.keys import ApiKeyConfig, AuthConfig, hash_key

    auth = AuthConfig(keys=(
        ApiKeyConfig(name="trial", hash=hash_key("sk-a"), credit_usd=1.0),
        ApiKeyConfig(name="plan", hash=hash_key("sk-b"), budget_usd=10.0, period="day"),
    ))
    turn_log = TurnLogConfig(sink="local", path=str(tmp_path))
    now = datetime.now(timezone.utc)
    first = KeyStore(auth, turn_log)
    assert first.top_up("trial", 0.5).credit_usd == pytest.approx(1.5)
    assert first.top_up("plan", 1.0) is None  # a budget is not topped up
    LocalParquetSink(tmp_path, "replica-a").write([
        record("r1", now, cost=0.4),
        record("r2", now, key="plan", cost=2.0),
        record("r3", now - timedelta(days=2), key="plan", cost=3.0),  # an earlier day
    ])
    second = KeyStore(auth, turn_log)
    assert second.allowance("trial").credit_remaining_usd == pytest.approx(1.1)
    assert second.allowance("plan").period_spend_usd == pytest.approx(2.0)
    # r1 was in the log when this keystore started: its late live charge is not counted again.
    request_id, timestamp_us = turn_ref("r1", now.timestamp())
    assert second.charge("trial", 0.4, now.timestamp(), request_id, timestamp_us).credit_remaining_usd == pytest.approx(1.1)
