"""Hedged first token, end to end: a first endpoint slow to its first token
gets the next one started beside it after the hedge delay; the first to
speak serves the turn and the other is cancelled at once."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from helpers import AUTH, wait_for_records

pytestmark = pytest.mark.ray

USER = [{"role": "user", "content": "hello"}]


def test_a_slow_first_token_is_hedged_and_the_loser_is_cancelled_at_once(router, simulator, turn_log_path):
    request_id = f"test-hedge-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    with httpx.Client(base_url=router, timeout=10, headers=AUTH) as client:
        with client.stream(
            "POST", "/v1/chat/completions", json={"model": "hedged", "messages": USER, "stream": True},
            headers={"x-request-id": request_id},
        ) as response:
            assert response.status_code == 200
            assert response.headers["x-nemo-endpoint"] == "hedge-fast"
            first_token_s = time.monotonic() - started
            body = response.read().decode()
        # The slow endpoint would take 3 s to its first token; the hedge
        # starts after 0.15 s and the fast one answers 20 ms later.
        assert first_token_s < 1.5
        assert "w8" in body and body.rstrip().endswith("[DONE]")
        # The loser's connection was closed at once, long before its 3 s.
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and simulator.stats()["hedge-slow"]["in_flight"] > 0:
            time.sleep(0.05)
        assert simulator.stats()["hedge-slow"]["in_flight"] == 0
        assert time.monotonic() - started < 2.5

    record = wait_for_records(turn_log_path, {request_id})[request_id]
    assert record["hedged"] is True
    assert record["endpoint"] == "hedge-fast" and record["status"] == "ok"
    outcomes = {a["endpoint"]: a["outcome"] for a in record["attempts"]}
    assert outcomes == {"hedge-slow": "cancelled", "hedge-fast": "ok"}


def test_a_quick_first_token_is_not_hedged(router, simulator, turn_log_path):
    request_id = f"test-nohedge-{uuid.uuid4().hex[:8]}"
    simulator.set_behavior("hedge-slow", ttft_ms=10)
    try:
        with httpx.Client(base_url=router, timeout=10, headers=AUTH) as client:
            response = client.post(
                "/v1/chat/completions", json={"model": "hedged", "messages": USER, "stream": True},
                headers={"x-request-id": request_id},
            )
    finally:
        simulator.set_behavior("hedge-slow", ttft_ms=3000)
    assert response.status_code == 200 and response.headers["x-nemo-endpoint"] == "hedge-slow"
    record = wait_for_records(turn_log_path, {request_id})[request_id]
    assert record["hedged"] is False
    assert [a["outcome"] for a in record["attempts"]] == ["ok"]


def test_parameters_a_provider_drops_are_noted_on_the_turn_record(router, turn_log_path):
    request_id = f"test-notes-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=router, timeout=10, headers=AUTH) as client:
        response = client.post(
            "/v1/chat/completions",
            json={"model": "notes-anthropic", "messages": USER, "presence_penalty": 0.5, "seed": 7},
            headers={"x-request-id": request_id},
        )
    assert response.status_code == 200
    record = wait_for_records(turn_log_path, {request_id})[request_id]
    assert record["request_notes"] == [
        "anthropic: dropped unsupported parameter 'presence_penalty'",
        "anthropic: dropped unsupported parameter 'seed'",
    ]


@pytest.mark.parametrize("stream", [True, False])
def test_a_request_fault_moves_to_the_declared_group_not_down_the_chain(router, turn_log_path, stream):
    request_id = f"test-ctx-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=router, timeout=10, headers=AUTH) as client:
        response = client.post(
            "/v1/chat/completions", json={"model": "ctx-small", "messages": USER, "stream": stream},
            headers={"x-request-id": request_id},
        )
    assert response.status_code == 200 and response.headers["x-nemo-endpoint"] == "ctx-large"
    assert "w6" in response.text
    record = wait_for_records(turn_log_path, {request_id})[request_id]
    assert [(a["endpoint"], a["outcome"], a["http_status"]) for a in record["attempts"]] == [
        ("ctx-small-1", "request_rejected", 400),
        ("ctx-large", "ok", 200),
    ]


def test_without_a_declared_group_a_request_fault_is_passed_on_at_once(router):
    with httpx.Client(base_url=router, timeout=10, headers=AUTH) as client:
        response = client.post("/v1/chat/completions", json={"model": "ctx-nowhere", "messages": USER})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert set(error) >= {"message", "type", "code"}
