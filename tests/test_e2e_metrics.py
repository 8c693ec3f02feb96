"""Rolling p50/p99 per model group merged across replicas, Prometheus text,
and an alert that fires when a simulated endpoint is made slow and resolves
when it recovers: posted to a local webhook receiver."""

from __future__ import annotations

import time

import httpx
import pytest
from helpers import ADMIN, AUTH

pytestmark = pytest.mark.ray

BODY = {"model": "alerting", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def turns(router: str, n: int) -> None:
    with httpx.Client(base_url=router, headers=AUTH, timeout=20) as client:
        for _ in range(n):
            assert client.post("/v1/chat/completions", json=BODY).status_code == 200


def webhook_texts(webhook) -> list[str]:
    return [r.json()["text"] for r in webhook.requests if r.path == "/slack-hook"]


def wait_until(predicate, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return predicate()


def test_metrics_json_and_prometheus_text(router):
    from prometheus_client.parser import text_string_to_metric_families

    turns(router, 6)
    metrics = wait_until(
        lambda: (m := httpx.get(f"{router}/v1/metrics", headers=ADMIN).json())["model_groups"].get("alerting", {}).get("turns", 0) >= 6 and m,
        10,
    )
    group = metrics["model_groups"]["alerting"]
    assert 0.005 < group["ttft_p50_s"] <= group["ttft_p99_s"] < 0.3
    assert group["error_rate"] == 0 and "alert-ep" in group["endpoints"]

    assert httpx.get(f"{router}/metrics").status_code == 401  # admin routes need the admin key
    text = httpx.get(f"{router}/metrics", headers=ADMIN).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    counts = [s.value for s in families["nemo_turn_ttft_seconds"].samples if s.name.endswith("_count") and s.labels.get("model_group") == "alerting"]
    assert counts and counts[0] >= 6


def test_alert_fires_when_an_endpoint_slows_and_resolves_when_it_recovers(router, simulator, webhook):
    turns(router, 5)  # fast first: nothing fires
    time.sleep(1.0)
    assert not any("alerting" in t for t in webhook_texts(webhook))

    simulator.set_behavior("alerting", ttft_ms=500)
    try:
        turns(router, 6)
        fired = wait_until(lambda: [t for t in webhook_texts(webhook) if "FIRING" in t and "alerting" in t], 10)
        assert fired and "ttft_p99_s" in fired[0]
    finally:
        simulator.set_behavior("alerting", ttft_ms=10)
    # Fast turns until the slow ones have left the 4 s window.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not [t for t in webhook_texts(webhook) if "RESOLVED" in t and "alerting" in t]:
        turns(router, 3)
        time.sleep(0.3)
    assert [t for t in webhook_texts(webhook) if "RESOLVED" in t and "alerting" in t]
