"""One voice turn end to end: real HTTP into a real Ray Serve instance,
through the ingress, the LatencyTracker and a provider-caller replica, to
simulated providers on loopback."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from helpers import ADMIN, TEST_KEY

pytestmark = pytest.mark.ray

USER = [{"role": "user", "content": "say some numbered words"}]


def sse_chunks(response: httpx.Response) -> list:
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[6:]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def text_of(chunks: list) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if isinstance(c, dict) and c.get("choices")
    )


def test_health_and_models(client):
    assert client.get("/health").json() == {"status": "ok"}
    response = client.get("/v1/models")
    models = response.json()
    assert models["object"] == "list"
    cards = {m["id"]: m for m in models["data"]}
    assert "voice-fast" in cards and "nemo" not in cards["voice-fast"]
    mini = cards["gpt-4o-mini"]["nemo"]  # a catalog model: its catalog fields
    assert mini["context_window"] > 0 and mini["price_usd_per_mtok"]["input"] > 0 and "function-calling" in mini["tags"]
    for secret_ish in ("api_key", "OPENAI_API_KEY", "base_url", "127.0.0.1"):
        assert secret_ish not in response.text


def test_streaming_turn_with_plain_httpx(client):
    payload = {"model": "voice-fast", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", "/v1/chat/completions", json=payload) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-nemo-endpoint"] == "sim-fast"
        assert response.headers["x-request-id"]
        chunks = sse_chunks(response)
    assert chunks[-1] == "[DONE]"
    assert text_of(chunks) == " ".join(f"w{i}" for i in range(1, 13))
    usage = [c["usage"] for c in chunks[:-1] if c.get("usage")]
    assert usage == [{"prompt_tokens": 4, "completion_tokens": 12, "total_tokens": 16}]


def test_streaming_without_include_usage_sends_no_usage_chunk(client):
    payload = {"model": "voice-fast", "messages": USER, "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=payload) as response:
        chunks = sse_chunks(response)
    assert all(c == "[DONE]" or c["choices"] for c in chunks)
    assert text_of(chunks).startswith("w1 w2")


def test_chunks_arrive_as_they_are_produced_not_buffered(client, simulator):
    # 6 tokens 150 ms apart: if the router buffered, they would arrive together.
    simulator.set_behavior("medium", ttft_ms=20, token_interval_ms=150, tokens=6)
    payload = {"model": "voice-fast", "messages": USER, "stream": True}
    try:
        arrivals = []
        simulator.set_behavior("fast", failure="http_503")  # force the medium endpoint
        with client.stream("POST", "/v1/chat/completions", json=payload) as response:
            assert response.headers["x-nemo-endpoint"] == "sim-medium"
            for line in response.iter_lines():
                if line.startswith("data: {") and '"content":"w' in line.replace(" ", ""):
                    arrivals.append(time.monotonic())
    finally:
        simulator.set_behavior("fast", failure="none")
        simulator.set_behavior("medium", ttft_ms=80, token_interval_ms=2, tokens=12)
    assert len(arrivals) == 6
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert min(gaps) > 0.08, gaps  # each token crossed on its own, about 150 ms apart


def test_non_streaming_turn_returns_chat_completion_with_usage(client):
    response = client.post("/v1/chat/completions", json={"model": "voice-fast", "messages": USER, "max_tokens": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "w1 w2 w3 w4 w5"
    assert body["usage"]["completion_tokens"] == 5
    assert response.headers["x-nemo-endpoint"] == "sim-fast"


def test_official_openai_client_streams_and_completes(router):
    from openai import OpenAI

    client = OpenAI(base_url=f"{router}/v1", api_key=TEST_KEY, max_retries=0, timeout=20)
    stream = client.chat.completions.create(
        model="voice-fast", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text == " ".join(f"w{i}" for i in range(1, 13))
    assert usage is not None and usage.completion_tokens == 12

    completion = client.chat.completions.create(model="voice-fast", messages=USER, max_tokens=3)
    assert completion.choices[0].message.content == "w1 w2 w3"
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 3


@pytest.mark.parametrize(
    ("group", "served_by"),
    [("failover-503", "fo-backup"), ("failover-refused", "refused-backup"), ("failover-hang", "hang-backup")],
)
def test_failover_before_first_token_is_invisible_to_the_caller(client, group, served_by):
    payload = {"model": group, "messages": USER, "stream": True}
    started = time.monotonic()
    with client.stream("POST", "/v1/chat/completions", json=payload) as response:
        assert response.status_code == 200
        assert response.headers["x-nemo-endpoint"] == served_by
        chunks = sse_chunks(response)
    assert text_of(chunks) == " ".join(f"w{i}" for i in range(1, 9))
    assert time.monotonic() - started < 5


def test_all_links_failing_gives_a_clear_error_in_bounded_time(client):
    started = time.monotonic()
    response = client.post("/v1/chat/completions", json={"model": "all-fail", "messages": USER, "stream": True})
    assert time.monotonic() - started < 5
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "all_upstreams_failed"
    assert "af-500" in error["message"] and "af-refused" in error["message"]


@pytest.mark.parametrize("group", ["drops", "malformed"])
def test_failure_after_the_stream_started_ends_with_an_sse_error_event(client, group):
    with client.stream("POST", "/v1/chat/completions", json={"model": group, "messages": USER, "stream": True}) as response:
        assert response.status_code == 200
        chunks = sse_chunks(response)
    assert chunks[-1] == "[DONE]"
    assert "error" in chunks[-2]
    assert text_of(chunks[:-2]).startswith("w1")


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (json.dumps({"messages": USER}).encode(), 400, "missing_required_parameter"),
        (json.dumps({"model": "voice-fast"}).encode(), 400, "missing_required_parameter"),
        (json.dumps({"model": "voice-fast", "messages": "hi"}).encode(), 400, "invalid_value"),
        (json.dumps({"model": "no-such-model", "messages": USER}).encode(), 404, "model_not_found"),
        (json.dumps({"model": "voice-fast", "messages": [{"role": "user", "content": "x" * 70000}]}).encode(), 413, "request_too_large"),
    ],
)
def test_bad_input_gets_openai_error_objects(client, content, status, code):
    response = client.post("/v1/chat/completions", content=content, headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == "invalid_request_error"
    assert "Traceback" not in response.text


def test_unknown_route_and_method_are_openai_errors(client):
    assert client.get("/v1/nothing").json()["error"]["code"] == "not_found"
    assert client.get("/v1/chat/completions").status_code == 405


def test_tracker_sees_outcomes_from_turns(client):
    before = client.get("/v1/routing", headers=ADMIN).json()["endpoints"]
    for _ in range(3):
        assert client.post("/v1/chat/completions", json={"model": "all-fail", "messages": USER}).status_code == 502
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = client.get("/v1/routing", headers=ADMIN).json()["endpoints"]
        if state["af-refused"]["turns"] - before["af-refused"]["turns"] >= 3:
            break
        time.sleep(0.2)
    assert state["af-500"]["outcomes"].get("upstream_5xx", 0) - before["af-500"]["outcomes"].get("upstream_5xx", 0) == 3
    assert state["af-refused"]["outcomes"].get("connect_error", 0) - before["af-refused"]["outcomes"].get("connect_error", 0) == 3
    assert state["af-500"]["in_flight"] == 0 and state["af-refused"]["in_flight"] == 0


def test_a_503_with_retry_after_holds_the_endpoint_out(client, simulator):
    # always-503 answers with Retry-After: 1: for that second the plans put
    # it last, so the next turn does not even try it.
    time.sleep(1.1)  # any earlier hold has ended
    assert client.post("/v1/chat/completions", json={"model": "failover-503", "messages": USER}).status_code == 200
    time.sleep(0.2)  # outcome reports are batched every 50 ms
    assert client.get("/v1/routing", headers=ADMIN).json()["endpoints"]["fo-503"]["breaker"] == "open"
    tried_before = simulator.stats()["always-503"]["requests"]
    response = client.post("/v1/chat/completions", json={"model": "failover-503", "messages": USER})
    assert response.headers["x-nemo-endpoint"] == "fo-backup"
    assert simulator.stats()["always-503"]["requests"] == tried_before
