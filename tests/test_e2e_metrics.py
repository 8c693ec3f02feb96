"""Rolling p50/p99 per model group merged across replicas, Prometheus text,
and an alert that fires when a simulated endpoint is made slow and resolves
when it recovers: posted to a local webhook receiver."""

from __future__ import annotations

import time

import httpx
import pytest
from helpers import ADMIN, AUTH, SCRAPE_KEY

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


def test_prometheus_series_per_upstream_in_both_formats_and_who_may_scrape(router):
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
    from prometheus_client.parser import text_string_to_metric_families

    priced = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True,
              "stream_options": {"include_usage": True}}
    with httpx.Client(base_url=router, headers=AUTH, timeout=20) as client:
        for _ in range(3):
            assert client.post("/v1/chat/completions", json=priced).status_code == 200
    upstream = {"model_group": "gpt-4o-mini", "upstream": "catalog:gpt-4o-mini"}
    scrape = {"authorization": f"Bearer {SCRAPE_KEY}"}

    def value(families, family, sample):
        samples = families[family].samples if family in families else []
        found = [s.value for s in samples if s.name == sample and all(s.labels.get(k) == v for k, v in upstream.items())]
        return found[0] if found else 0

    def classic():
        response = httpx.get(f"{router}/metrics", headers=scrape)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=0.0.4")
        return {f.name: f for f in text_string_to_metric_families(response.text)}

    families = wait_until(lambda: (f := classic()) and value(f, "nemo_turns", "nemo_turns_total") >= 3 and f, 10)
    assert families, "three turns never reached the metrics hub"
    assert value(families, "nemo_spend_usd", "nemo_spend_usd_total") > 0
    assert value(families, "nemo_prompt_tokens", "nemo_prompt_tokens_total") > 0
    assert value(families, "nemo_completion_tokens", "nemo_completion_tokens_total") > 0
    assert value(families, "nemo_gateway_overhead_seconds", "nemo_gateway_overhead_seconds_count") >= 3
    assert value(families, "nemo_upstream_breaker_state", "nemo_upstream_breaker_state") == 0  # closed
    assert [s for s in families["nemo_upstream_in_flight"].samples if s.labels.get("upstream") == "catalog:gpt-4o-mini"]
    for family in ("nemo_fallbacks", "nemo_hedged_turns", "nemo_cache_hits", "nemo_upstream_failures"):
        assert families[family].type == "counter"

    response = httpx.get(f"{router}/metrics", headers={**scrape, "accept": "application/openmetrics-text; version=1.0.0"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    open_families = {f.name: f for f in openmetrics_families(response.text)}
    assert value(open_families, "nemo_spend_usd", "nemo_spend_usd_total") > 0

    # Who may scrape: the scrape key (above), the admin key, an address the
    # trusted proxy saw in the scrape network; not a client key, nor another address.
    assert httpx.get(f"{router}/metrics", headers=ADMIN).status_code == 200
    assert httpx.get(f"{router}/metrics", headers={"x-forwarded-for": "192.0.2.7"}).status_code == 200
    assert httpx.get(f"{router}/metrics", headers={"x-forwarded-for": "192.0.2.7, 198.51.100.1"}).status_code == 401
    two_lines = [("x-forwarded-for", "192.0.2.7"), ("x-forwarded-for", "198.51.100.1")]  # the last line is the proxy's
    assert httpx.get(f"{router}/metrics", headers=two_lines).status_code == 401
    assert httpx.get(f"{router}/metrics", headers=AUTH).status_code == 403
    assert httpx.get(f"{router}/metrics", headers={"authorization": f"Bearer {SCRAPE_KEY}x"}).status_code == 401
    # The scrape key reads /metrics and nothing else.
    assert httpx.get(f"{router}/v1/metrics", headers=scrape).status_code == 401
    assert httpx.get(f"{router}/v1/routing", headers=scrape).status_code == 401
    assert httpx.post(f"{router}/v1/chat/completions", headers=scrape, json=priced).status_code == 401


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
