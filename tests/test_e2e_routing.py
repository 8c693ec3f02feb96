"""Routing on live signal, end to end: two ingress replicas share the
LatencyTracker's state; simulated endpoints change speed at run time."""

from __future__ import annotations

import collections
import concurrent.futures
import time

import httpx
import pytest
from helpers import ADMIN, AUTH

pytestmark = pytest.mark.ray

USER = [{"role": "user", "content": "hi"}]


def served_by(client: httpx.Client, model: str, **extra) -> str:
    response = client.post("/v1/chat/completions", json={"model": model, "messages": USER, "stream": True, **extra})
    assert response.status_code == 200, response.text
    return response.headers["x-nemo-endpoint"]


def test_latency_based_prefers_the_fast_endpoint_and_moves_when_it_slows(client, simulator):
    counts = collections.Counter(served_by(client, "live") for _ in range(40))
    assert counts["live-a"] >= 28, counts  # the 40 ms endpoint, bar exploration

    simulator.set_behavior("lat-a", ttft_ms=400)
    try:
        moved_at = None
        picks = []
        started = time.monotonic()
        for turn in range(40):
            picks.append(served_by(client, "live"))
            if moved_at is None and picks[-3:] == ["live-b"] * 3:
                moved_at = time.monotonic() - started
        assert moved_at is not None and moved_at < 10, picks
        tail = collections.Counter(picks[-20:])
        assert tail["live-b"] >= 15, tail  # now the fastest
        assert picks.count("live-a") <= 8, picks  # few turns still went to the slowed endpoint
    finally:
        simulator.set_behavior("lat-a", ttft_ms=40)


def test_least_busy_spreads_concurrent_turns_across_endpoints(router):
    # 9 concurrent turns of ~1.5 s each, through both ingress replicas:
    # global in-flight counts must spread them 3/3/3 (a per-replica view would not).
    def one(_):
        with httpx.Client(base_url=router, timeout=20, headers=AUTH) as http:
            return served_by(http, "least-busy")

    with concurrent.futures.ThreadPoolExecutor(9) as pool:
        futures = []
        for i in range(9):
            futures.append(pool.submit(one, i))
            time.sleep(0.08)  # let each plan land before the next
        counts = collections.Counter(f.result(timeout=30) for f in futures)
    assert sorted(counts.values()) == [3, 3, 3], counts


def test_breaker_takes_a_failing_endpoint_out_and_routing_state_shows_it(client, simulator):
    before = simulator.stats()["flaky"]["requests"]
    for _ in range(8):
        assert served_by(client, "breaker") == "br-backup"
        time.sleep(0.1)  # outcome reports are batched every 50 ms
    hits = simulator.stats()["flaky"]["requests"] - before
    assert 2 <= hits <= 4, hits  # opened after 2 consecutive failures
    state = client.get("/v1/routing", headers=ADMIN).json()["endpoints"]
    assert state["br-flaky"]["breaker"] == "open"
    assert state["br-backup"]["breaker"] == "closed"
    assert state["br-backup"]["ttft_p50_s"] is not None and state["br-backup"]["ttft_p99_s"] >= state["br-backup"]["ttft_p50_s"]
    assert all(entry["in_flight"] >= 0 for entry in state.values())


def test_tags_and_tools_restrict_the_endpoints(client):
    # In voice-fast only sim-fast is tagged function-calling.
    simulator_free = {"x-nemo-tags": "function-calling"}
    response = client.post(
        "/v1/chat/completions", json={"model": "voice-fast", "messages": USER}, headers=simulator_free
    )
    assert response.headers["x-nemo-endpoint"] == "sim-fast"
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
    assert served_by(client, "voice-fast", tools=tools) == "sim-fast"

    missing = client.post("/v1/chat/completions", json={"model": "voice-fast", "messages": USER, "nemo_tags": ["eu"]})
    assert missing.status_code == 400
    error = missing.json()["error"]
    assert error["code"] == "no_eligible_endpoint" and "eu" in error["message"]

    bad = client.post("/v1/chat/completions", json={"model": "voice-fast", "messages": USER}, headers={"x-nemo-tags": "Not A Tag!"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


def test_active_health_check_takes_a_dead_endpoint_out_before_any_turn(client):
    # probe-dead refuses connections; no turn has been sent to group "probed".
    deadline = time.monotonic() + 15
    state = {}
    while time.monotonic() < deadline:
        state = client.get("/v1/routing", headers=ADMIN).json()["endpoints"]
        if state["probe-dead"]["breaker"] == "open":
            break
        time.sleep(0.2)
    assert state["probe-dead"]["breaker"] == "open"
    assert state["probe-dead"]["turns"] == 0  # the checks alone did it
    assert state["probe-ok"]["breaker"] == "closed"
    # Configured order puts probe-dead first; the open breaker moves it last.
    assert served_by(client, "probed") == "probe-ok"
    time.sleep(0.2)
    assert client.get("/v1/routing", headers=ADMIN).json()["endpoints"]["probe-dead"]["turns"] == 0
