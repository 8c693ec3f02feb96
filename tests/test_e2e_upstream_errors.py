"""Upstream errors as the client sees them (issue 14): an upstream that
refuses the router's own provider key is the endpoint's fault (failed over,
counted against its health, logged for the operator), and no upstream's
error text ever reaches the client; it is kept, redacted, in the turn record.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from helpers import sim_endpoint, wait_for_records

pytestmark = pytest.mark.ray

APP = "nemo-router-upstream"
PREFIX = "/upstream"
USER = [{"role": "user", "content": "hello"}]
# Fragments the simulated providers put in their 401/403/400 messages.
LEAKS = ("sk-sim-REVOKED", "internal.sim.example", "10.20.30.40", "proj_sim_", "maximum context length")


@pytest.fixture(scope="module")
def upstream(router, simulator, tmp_path_factory):
    from ray import serve

    from deployments.app import build_app
    from router.config import parse_config

    for name, failure in (("up-401", "http_401"), ("up-403", "http_403"), ("up-400", "context_too_long")):
        simulator.set_behavior(name, failure=failure)
    simulator.set_behavior("up-ok", ttft_ms=5, token_interval_ms=1, tokens=4)
    turn_log = tmp_path_factory.mktemp("upstream-turnlog")

    def ep(name, profile, provider="openai"):
        return sim_endpoint(simulator, name, profile, provider)

    steady = {"strategy": "ordered", "breaker": {"consecutive_failures": 10_000, "min_requests": 10_000}}
    config = parse_config(
        {
            "model_groups": {
                "auth-failover": {**steady, "max_attempts": 4, "endpoints": [ep("oa-401", "up-401"), ep("an-401", "up-401", "anthropic"),
                                                          ep("ge-403", "up-403", "gemini"), ep("ok", "up-ok")]},
                "auth-only": {**steady, "endpoints": [ep("only-401", "up-401"), ep("only-403", "up-403")]},
                "auth-breaker": {"strategy": "ordered", "breaker": {"consecutive_failures": 2, "cooldown_s": 60},
                                 "endpoints": [ep("br-401", "up-401"), ep("br-ok", "up-ok")]},
                "rejected": {**steady, "endpoints": [ep("small", "up-400")]},
            },
            "turn_log": {"sink": "local", "path": str(turn_log), "flush_interval_s": 0.3},
            "deployments": {"tracker_name": "nemo-tracker-upstream"},
            "cache": {"enabled": False},
            "metrics": {"enabled": False},
        }
    )
    serve.run(build_app(config), name=APP, route_prefix=PREFIX)
    yield f"{router}{PREFIX}", turn_log
    serve.delete(APP)


def post(url: str, model: str, request_id: str, stream: bool = False) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", timeout=20, headers={"x-request-id": request_id},
                      json={"model": model, "stream": stream, "messages": USER})


@pytest.mark.parametrize("stream", [False, True])
def test_a_refused_provider_key_fails_over_and_is_never_the_clients_401(upstream, stream):
    url, turn_log = upstream
    request_id = f"auth-{stream}-{uuid.uuid4().hex[:8]}"
    response = post(url, "auth-failover", request_id, stream)
    assert response.status_code == 200 and response.headers["x-nemo-endpoint"] == "ok"
    record = wait_for_records(turn_log, {request_id})[request_id]
    assert [a["outcome"] for a in record["attempts"]] == ["upstream_auth", "upstream_auth", "upstream_auth", "ok"]


def test_when_every_key_is_refused_the_client_gets_the_routers_502_and_no_upstream_text(upstream):
    url, turn_log = upstream
    request_id = f"auth-only-{uuid.uuid4().hex[:8]}"
    response = post(url, "auth-only", request_id)
    assert response.status_code == 502
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert not any(leak in response.text for leak in LEAKS), response.text
    record = wait_for_records(turn_log, {request_id})[request_id]
    assert record["status"] == "error"
    assert "HTTP 403" in record["error_detail"] and "[redacted]" in record["error_detail"]
    assert not any(leak in record["error_detail"] for leak in LEAKS[:-1])


def test_a_refused_key_counts_against_the_endpoints_health(upstream):
    url, _ = upstream
    for _ in range(3):
        assert post(url, "auth-breaker", f"br-{uuid.uuid4().hex[:8]}").status_code == 200
    snapshot = httpx.get(f"{url}/v1/routing", timeout=10).json()["endpoints"]
    assert snapshot["br-401"]["breaker"] == "open"
    assert post(url, "auth-breaker", "br-after").headers["x-nemo-endpoint"] == "br-ok"


def test_a_request_fault_reaches_the_client_in_the_routers_words(upstream):
    url, turn_log = upstream
    request_id = f"rejected-{uuid.uuid4().hex[:8]}"
    response = post(url, "rejected", request_id)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["type"] == "invalid_request_error"
    assert "maximum context length" not in error["message"]
    record = wait_for_records(turn_log, {request_id})[request_id]
    assert "maximum context length" in record["error_detail"]
