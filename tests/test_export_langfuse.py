"""The Langfuse exporter against a real local receiver: payload shape, auth, batching, retry, secrecy."""

from __future__ import annotations

import base64
import logging
from datetime import datetime, timezone

from nemo_turnlog.delivery import RetryPolicy
from nemo_turnlog.export_testing import LocalHttpReceiver, sample_turn
from nemo_turnlog.langfuse import LangfuseExporter, langfuse_events

PUBLIC_KEY, SECRET_KEY = "pk-lf-test-public", "sk-lf-test-secret-never-logged"
FAST_RETRIES = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)
INGESTION = "/api/public/ingestion"
ISO_UTC = "%Y-%m-%dT%H:%M:%S.%fZ"


def _exporter(receiver: LocalHttpReceiver, **options) -> LangfuseExporter:
    return LangfuseExporter(PUBLIC_KEY, SECRET_KEY, host=receiver.url + "/", policy=FAST_RETRIES, **options)


def test_each_turn_is_a_trace_and_a_generation_as_the_ingestion_api_documents():
    record = sample_turn(request_id="req-1", ttft_s=0.25, total_s=1.5)
    trace, generation = langfuse_events(record, environment="prod", now=datetime(2025, 1, 31, 8, tzinfo=timezone.utc))
    for event in (trace, generation):
        assert set(event) == {"id", "type", "timestamp", "body"}
        datetime.strptime(event["timestamp"], ISO_UTC)
    assert trace["type"] == "trace-create" and generation["type"] == "generation-create"
    assert trace["body"]["id"] == "req-1" and trace["body"]["name"] == "voice-fast"
    assert trace["body"]["timestamp"] == "2025-01-31T07:30:00.000000Z"
    body = generation["body"]
    assert body["traceId"] == "req-1" and body["id"] == "req-1:generation" and body["model"] == "sim-model"
    assert body["startTime"] == "2025-01-31T07:30:00.000000Z"
    assert body["completionStartTime"] == "2025-01-31T07:30:00.250000Z"
    assert body["endTime"] == "2025-01-31T07:30:01.500000Z"
    assert body["usageDetails"] == {"input": 40, "output": 12, "total": 52}
    assert body["usage"] == {"input": 40, "output": 12, "total": 52, "unit": "TOKENS"}
    assert body["level"] == "DEFAULT" and body["environment"] == "prod"
    meta = body["metadata"]
    assert (meta["endpoint"], meta["provider"], meta["status"], meta["fallback_count"]) == ("sim-fast", "openai", "ok", 0)
    assert meta["attempts"] == [{"endpoint": "sim-fast", "outcome": "ok", "duration_s": 0.8, "http_status": 200}]
    assert langfuse_events(record)[0]["id"] == trace["id"]  # stable ids: Langfuse deduplicates resends


def test_failed_turns_are_error_level_without_first_token_or_usage():
    record = sample_turn(status="error", error_type="UpstreamTimeout", ttft_s=None, endpoint=None, model=None,
                         prompt_tokens=None, completion_tokens=None, total_tokens=None)
    body = langfuse_events(record)[1]["body"]
    assert body["level"] == "ERROR" and body["statusMessage"] == "UpstreamTimeout"
    assert "completionStartTime" not in body and "usage" not in body and "costDetails" not in body


def test_batches_with_basic_auth_and_retries_a_503(caplog):
    caplog.set_level(logging.DEBUG)
    answer_207 = (207, {"successes": [], "errors": [{"id": "x", "status": 400, "message": "bad"}]})
    with LocalHttpReceiver(script={INGESTION: [503, 200, answer_207]}) as receiver:
        exporter = _exporter(receiver, max_batch_turns=2)
        exporter.on_turns([sample_turn(request_id=f"r{i}") for i in range(3)])
        retried, first, second = receiver.wait_for(3)
        exporter.close()
    expected = "Basic " + base64.b64encode(f"{PUBLIC_KEY}:{SECRET_KEY}".encode()).decode()
    assert all(r.path == INGESTION and r.headers["authorization"] == expected for r in (retried, first, second))
    assert retried.body == first.body  # the same events, so Langfuse can deduplicate
    assert [len(r.json()["batch"]) for r in (first, second)] == [4, 2]
    traces = [e["body"]["id"] for r in (first, second) for e in r.json()["batch"] if e["type"] == "trace-create"]
    assert traces == ["r0", "r1", "r2"]
    assert exporter.stats() == {"delivered": 3, "failed": 0, "dropped": 0, "queued": 0, "rejected_events": 1}
    assert "HTTP 503" in caplog.text and "1 events rejected" in caplog.text
    assert SECRET_KEY not in caplog.text and expected not in caplog.text
    assert SECRET_KEY not in repr(exporter) and PUBLIC_KEY not in repr(exporter)


def test_gives_up_after_bounded_attempts_and_never_blocks_the_caller():
    with LocalHttpReceiver(default_status=500) as receiver:
        exporter = _exporter(receiver)
        exporter.on_turns([sample_turn()])
        receiver.wait_for(3)
        exporter.close()
        assert len(receiver.requests) == 3
    assert exporter.stats()["failed"] == 1


def test_a_refused_request_is_not_retried():
    with LocalHttpReceiver(default_status=401) as receiver:
        exporter = _exporter(receiver)
        exporter.on_turns([sample_turn()])
        exporter.close()
        assert len(receiver.requests) == 1
    assert exporter.stats()["failed"] == 1
