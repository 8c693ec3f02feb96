"""The Datadog exporter against a real local receiver: logs intake and distribution points."""

from __future__ import annotations

import logging

import httpx

from nemo_turnlog.datadog import DatadogExporter, datadog_log
from nemo_turnlog.delivery import RetryPolicy
from nemo_turnlog.export_testing import LocalHttpReceiver, sample_turn

API_KEY = "dd-api-key-test-secret-never-logged"
FAST_RETRIES = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)
LOGS, POINTS = "/api/v2/logs", "/api/v1/distribution_points"


def _exporter(receiver: LocalHttpReceiver, **options) -> DatadogExporter:
    return DatadogExporter(
        API_KEY, service="voice-gw", hostname="node-1", tags=["env:test"], policy=FAST_RETRIES,
        logs_url=receiver.url + LOGS, metrics_url=receiver.url + POINTS, clock=lambda: 1738308600.7, **options,
    )


def test_a_turn_is_a_log_with_reserved_attributes_and_the_turn_fields():
    log = datadog_log(sample_turn(request_id="r1"), service="voice-gw", hostname="node-1", tags=["env:test"])
    assert (log["ddsource"], log["service"], log["hostname"], log["status"]) == ("nemo-router", "voice-gw", "node-1", "info")
    assert log["ddtags"] == "model_group:voice-fast,endpoint:sim-fast,provider:openai,status:ok,env:test,voice"
    assert log["message"] == "turn ok voice-fast via sim-fast ttft=0.120s total=0.800s"
    assert log["duration"] == 800_000_000 and log["date"] == "2025-01-31T07:30:00+00:00"
    assert log["turn"]["request_id"] == "r1" and log["turn"]["ttft_s"] == 0.12 and log["turn"]["attempts"][0]["outcome"] == "ok"
    failed = datadog_log(sample_turn(status="error", endpoint=None, error_type="AllAttemptsFailed"), service="s", hostname="h")
    assert failed["status"] == "error" and "endpoint:none" in failed["ddtags"] and failed["message"].endswith("AllAttemptsFailed")


def test_logs_and_distributions_are_posted_in_batches_with_the_api_key(caplog):
    caplog.set_level(logging.DEBUG)
    with LocalHttpReceiver(script={LOGS: [503]}, default_status=202) as receiver:
        exporter = _exporter(receiver, max_batch_turns=2)
        exporter.on_turns([sample_turn(ttft_s=0.1), sample_turn(ttft_s=0.3), sample_turn(status="error", ttft_s=None)])
        requests = receiver.wait_for(5)
        exporter.close()
    assert all(r.headers["dd-api-key"] == API_KEY and r.headers["content-type"] == "application/json" for r in requests)
    logs = [r for r in requests if r.path == LOGS]
    points = [r for r in requests if r.path == POINTS]
    assert len(logs) == 3 and logs[0].body == logs[1].body  # the 503 was retried with the same batch
    assert [len(r.json()) for r in logs[1:]] == [2, 1] and all(isinstance(r.json(), list) for r in logs)
    first = points[0].json()["series"]
    [ttft] = [s for s in first if s["metric"] == "nemo.turn.ttft"]
    assert ttft["type"] == "distribution" and ttft["host"] == "node-1"
    assert ttft["points"] == [[1738308600, [0.1, 0.3]]]
    assert "model_group:voice-fast" in ttft["tags"] and "env:test" in ttft["tags"]
    second = points[1].json()["series"]
    assert [s["metric"] for s in second] == ["nemo.turn.total"] and "status:error" in second[0]["tags"]
    assert exporter.stats()["delivered"] == 3
    assert API_KEY not in caplog.text and API_KEY not in repr(exporter)


def test_connection_errors_are_retried_then_dropped(caplog):
    caplog.set_level(logging.INFO)
    attempts = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request.url.path)
        raise httpx.ConnectError("connection refused")

    exporter = DatadogExporter(API_KEY, send_metrics=False, policy=FAST_RETRIES, transport=httpx.MockTransport(refuse))
    exporter.on_turns([sample_turn()])
    exporter.close()
    assert attempts == [LOGS] * 3 and exporter.stats()["failed"] == 1
    assert "ConnectError" in caplog.text and API_KEY not in caplog.text
