"""Every turn's record lands in the local Parquet turn log, written by the
provider-caller replica inside Ray Serve."""

from __future__ import annotations

import contextlib
import json
import time
import uuid

import httpx
import pytest
from helpers import AUTH, wait_for_records

pytestmark = pytest.mark.ray

USER = [{"role": "user", "content": "one two three"}]


def test_every_turn_is_recorded_with_its_fields(client, turn_log_path):
    ids = {name: f"test-{name}-{uuid.uuid4().hex[:8]}" for name in ("stream", "plain", "failover", "failed")}
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "voice-fast", "messages": USER, "stream": True},
        headers={"x-request-id": ids["stream"], "x-nemo-tags": "function-calling"},
    ) as response:
        assert response.headers["x-request-id"] == ids["stream"]
        response.read()
    client.post("/v1/chat/completions", json={"model": "voice-fast", "messages": USER}, headers={"x-request-id": ids["plain"]})
    client.post(
        "/v1/chat/completions",
        json={"model": "failover-log", "messages": USER, "stream": True},
        headers={"x-request-id": ids["failover"]},
    )
    client.post("/v1/chat/completions", json={"model": "all-fail", "messages": USER}, headers={"x-request-id": ids["failed"]})

    rows = wait_for_records(turn_log_path, set(ids.values()))
    assert set(rows) == set(ids.values())

    streamed = rows[ids["stream"]]
    assert streamed["model_group"] == "voice-fast"
    assert streamed["endpoint"] == "sim-fast" and streamed["provider"] == "openai"
    assert streamed["model"] == "sim-model"
    assert streamed["streamed"] is True and streamed["status"] == "ok" and streamed["http_status"] == 200
    assert 0.02 < streamed["ttft_s"] < streamed["total_s"] < 5
    # The client did not ask for usage, but the router did: tokens are logged.
    assert (streamed["prompt_tokens"], streamed["completion_tokens"]) == (3, 12)
    assert streamed["timestamp"].tzinfo is not None
    assert streamed["tags"] == ["function-calling"]
    assert 0 <= streamed["gateway_overhead_s"] < 0.5  # the router's own time, not the upstream's
    assert streamed["messages_json"] is None  # privacy default: no message contents
    assert streamed["api_key_id"] == "tests" and streamed["cache_hit"] is False

    plain = rows[ids["plain"]]
    assert plain["streamed"] is False and plain["completion_tokens"] == 12

    failover = rows[ids["failover"]]
    assert failover["endpoint"] == "log-backup" and failover["fallback_count"] == 1
    assert [(a["endpoint"], a["outcome"]) for a in failover["attempts"]] == [("log-500", "upstream_5xx"), ("log-backup", "ok")]
    assert failover["attempts"][0]["http_status"] == 500

    failed = rows[ids["failed"]]
    assert failed["status"] == "error" and failed["http_status"] == 502
    assert failed["endpoint"] is None and len(failed["attempts"]) == 2


@contextlib.contextmanager
def _fresh_stream(router: str, request_id: str, model: str = "voice-fast"):
    """A streamed turn on a connection of its own."""
    with httpx.Client(base_url=router, timeout=10, headers=AUTH) as client:
        with client.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": model, "messages": USER, "stream": True},
            headers={"x-request-id": request_id},
        ) as response:
            yield response


def test_client_disconnect_cancels_the_upstream_call_and_is_recorded(router, simulator, turn_log_path):
    request_id = f"test-cancel-{uuid.uuid4().hex[:8]}"
    simulator.set_behavior("slow", ttft_ms=20, token_interval_ms=200, tokens=50)
    simulator.set_behavior("fast", failure="http_503")
    simulator.set_behavior("medium", failure="http_503")
    try:
        with _fresh_stream(router, request_id) as response:
            assert response.headers["x-nemo-endpoint"] == "sim-slow"
            next(response.iter_lines())  # one piece, then hang up
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and simulator.stats()["slow"]["in_flight"] > 0:
            time.sleep(0.1)
        assert simulator.stats()["slow"]["in_flight"] == 0  # the upstream connection was closed
    finally:
        simulator.set_behavior("slow", ttft_ms=150, token_interval_ms=2, tokens=12)
        simulator.set_behavior("fast", failure="none")
        simulator.set_behavior("medium", failure="none")
    record = wait_for_records(turn_log_path, {request_id})[request_id]
    assert record["status"] == "cancelled"
    assert record["endpoint"] == "sim-slow"
    assert record["total_s"] < 9  # ended with the client, not after 50 tokens at 200 ms


def test_a_client_that_pauses_mid_stream_is_not_taken_for_a_disconnect(router, turn_log_path):
    # The counterpart of the test above: a client that stops reading for a
    # while (a TTS engine catching up), on the first turn of a fresh
    # connection, still gets the whole stream, and the turn is logged ok.
    request_id = f"test-pause-{uuid.uuid4().hex[:8]}"
    with _fresh_stream(router, request_id) as response:
        lines = response.iter_lines()
        first = next(lines)
        time.sleep(1.5)  # the stream ends upstream meanwhile
        data = [first, *(line for line in lines if line.startswith("data: "))]
    assert data[-1] == "data: [DONE]"
    record = wait_for_records(turn_log_path, {request_id})[request_id]
    assert record["status"] == "ok"
    chunks = [json.loads(d[6:]) for d in data[:-1]]
    words = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert words.split() == [f"w{i}" for i in range(1, record["completion_tokens"] + 1)]


def test_a_fallback_chain_across_groups_is_one_clean_stream_and_every_attempt_is_logged(router, turn_log_path):
    request_id = f"test-chain-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    with _fresh_stream(router, request_id, model="chain") as response:
        assert response.status_code == 200
        assert response.headers["x-nemo-endpoint"] == "chain-ok"
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    elapsed_s = time.monotonic() - started
    assert 0.8 <= elapsed_s < 4  # the first-token deadline fired, then the chain moved on
    chunks = [json.loads(line) for line in lines[:-1]]
    assert lines[-1] == "[DONE]" and not any("error" in c for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "w1 w2 w3 w4 w5 w6 w7 w8"

    record = wait_for_records(turn_log_path, {request_id})[request_id]
    assert [(a["endpoint"], a["outcome"]) for a in record["attempts"]] == [
        ("chain-hang", "timeout"),
        ("chain-500", "upstream_5xx"),
        ("chain-ok", "ok"),
    ]
    assert record["fallback_count"] == 2 and record["model_group"] == "chain"
