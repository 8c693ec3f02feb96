"""Conversations end to end: the id from the header and from the body lands
in the turn log, the tracker counts turns across both ingress replicas, and
cache-warm affinity keeps a call on its endpoint until that endpoint turns
slow (simulated endpoints change speed at run time)."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from helpers import wait_for_records
from openai import OpenAI

pytestmark = pytest.mark.ray

MARGIN_S = 0.5  # wide: on a loaded machine one TTFT sample can be 100 ms or more late
PROFILES = {"conv-a": {"ttft_ms": 40, "token_interval_ms": 1, "tokens": 4}, "conv-b": {"ttft_ms": 40, "token_interval_ms": 1, "tokens": 4}}
# A catalog model (priced) whose endpoint keeps a prompt-prefix cache.
PRICED = {"ttft_ms": 40, "token_interval_ms": 1, "tokens": 4, "prefix_cache_ttl_s": 60, "warm_ttft_factor": 0.5}


@pytest.fixture(scope="module")
def conv_router(router, simulator, tmp_path_factory):
    from ray import serve

    from deployments.app import build_app
    from router.config import parse_config

    for profile, behavior in PROFILES.items():
        simulator.set_behavior(profile, **behavior)
    simulator.set_behavior("conv-priced", **PRICED)
    turn_log = tmp_path_factory.mktemp("conv-turnlog")
    endpoints = [{"name": p, "base_url": simulator.base_url(p), "model": "sim-model"} for p in PROFILES]
    config = parse_config(
        {
            "model_groups": {
                "conv": {
                    "strategy": "latency-based",
                    "latency": {"explore_share": 0.0},
                    "affinity": {"margin_s": MARGIN_S},
                    "endpoints": endpoints,
                },
                # Ordered: without affinity every turn would start on conv-cut
                # (the shared "cut" profile drops after 3 words; "continuer" finishes).
                "conv-failover": {
                    "strategy": "ordered",
                    "endpoints": [{"name": "conv-cut", "base_url": simulator.base_url("cut"), "model": "sim-model"},
                                  {"name": "conv-next", "base_url": simulator.base_url("continuer"), "model": "sim-model"}],
                },
                "gpt-4o-mini": {"endpoints": [{"name": "catalog:gpt-4o-mini", "base_url": simulator.base_url("conv-priced"), "model": "sim-model"}]},
            },
            "turn_log": {"sink": "local", "path": str(turn_log), "flush_interval_s": 0.3},
            "deployments": {"tracker_name": "nemo-tracker-conv", "ingress_replicas": 2, "report_interval_s": 0.05},
            "cache": {"enabled": False},
        }
    )
    serve.run(build_app(config), name="nemo-router-conv", route_prefix="/conv")
    yield f"{router}/conv", turn_log
    serve.delete("nemo-router-conv")
    for profile, behavior in PROFILES.items():
        simulator.set_behavior(profile, **behavior)


def turn(url: str, headers: dict | None = None, **body) -> httpx.Response:
    """One streamed turn on a fresh connection (so turns spread over both
    ingress replicas), read to the end."""
    payload = {"model": "conv", "stream": True, "messages": [{"role": "user", "content": "hi"}], **body}
    request_headers = {"x-request-id": f"conv-{uuid.uuid4().hex[:12]}", **(headers or {})}
    with httpx.Client(timeout=20) as http:
        response = http.post(f"{url}/v1/chat/completions", json=payload, headers=request_headers)
    assert response.status_code == 200, response.text
    response.request_id = request_headers["x-request-id"]
    return response


def wait_pinned(url: str, endpoint: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = httpx.get(f"{url}/v1/routing", timeout=5).json()["endpoints"]
        if state[endpoint]["pinned_conversations"] >= 1:
            return
        time.sleep(0.05)
    raise AssertionError(f"no conversation pinned to {endpoint} within {timeout_s} s")


def test_ids_from_the_header_and_the_body_land_in_the_turn_log(conv_router):
    url, turn_log = conv_router
    client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    ids = {}
    for name, kwargs in {
        "header": {"extra_headers": {"x-nemo-conversation-id": "call-header", "x-nemo-conversation-turn": "5"}},
        "metadata": {"metadata": {"conversation_id": "call-metadata"}},
        "user": {"user": "caller-555"},
        "invalid": {"extra_headers": {"x-nemo-conversation-id": "has space"}, "user": "caller-556"},
    }.items():
        request_id = f"conv-{name}-{uuid.uuid4().hex[:8]}"
        headers = {**kwargs.pop("extra_headers", {}), "x-request-id": request_id}
        stream = client.chat.completions.with_raw_response.create(
            model="conv", messages=[{"role": "user", "content": "hi"}], stream=True, extra_headers=headers, **kwargs
        )
        assert stream.headers["x-nemo-conversation-id"]
        text = "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)
        assert text == "w1 w2 w3 w4"
        ids[name] = request_id
    rows = wait_for_records(turn_log, set(ids.values()))
    assert (rows[ids["header"]]["conversation_id"], rows[ids["header"]]["conversation_turn"]) == ("call-header", 5)
    assert (rows[ids["metadata"]]["conversation_id"], rows[ids["metadata"]]["conversation_turn"]) == ("call-metadata", 1)
    assert rows[ids["user"]]["conversation_id"] == "caller-555"
    invalid = rows[ids["invalid"]]
    assert invalid["conversation_id"] == "caller-556"  # the bad header is ignored, the next source used
    assert any("x-nemo-conversation-id" in note for note in invalid["request_notes"])


def test_the_router_counts_turns_across_both_ingress_replicas(conv_router):
    url, turn_log = conv_router
    call = f"call-count-{uuid.uuid4().hex[:8]}"
    responses = [turn(url, {"x-nemo-conversation-id": call}) for _ in range(8)]
    assert [int(r.headers["x-nemo-conversation-turn"]) for r in responses] == list(range(1, 9))
    rows = wait_for_records(turn_log, {r.request_id for r in responses})
    assert sorted(r["conversation_turn"] for r in rows.values()) == list(range(1, 9))


def test_affinity_keeps_a_call_on_its_endpoint_and_moves_it_when_that_endpoint_turns_slow(conv_router, simulator):
    url, turn_log = conv_router
    call = {"x-nemo-conversation-id": f"call-aff-{uuid.uuid4().hex[:8]}"}
    for _ in range(4):
        turn(url)  # both endpoints get latency data
    pinned = turn(url, call).headers["x-nemo-endpoint"]
    other = next(p for p in PROFILES if p != pinned)
    try:
        # Slower than the other by less than the margin: latency alone would
        # move the call; affinity keeps it where its cache is warm.
        simulator.set_behavior(pinned, ttft_ms=40 + MARGIN_S * 1000 / 2)
        kept = [turn(url, call) for _ in range(5)]
        assert [r.headers["x-nemo-endpoint"] for r in kept] == [pinned] * 5
        assert turn(url).headers["x-nemo-endpoint"] == other  # a turn without a conversation goes by latency
        # Far slower than the margin: the call moves, and stays moved.
        simulator.set_behavior(pinned, ttft_ms=40 + MARGIN_S * 1000 * 2.5)
        deadline = time.monotonic() + 15
        moved = []
        while time.monotonic() < deadline and moved[-2:] != [other, other]:
            moved.append(turn(url, call).headers["x-nemo-endpoint"])
        assert moved[-2:] == [other, other], moved
        assert moved.count(pinned) <= 2, moved
    finally:
        simulator.set_behavior(pinned, **PROFILES[pinned])
    rows = wait_for_records(turn_log, {r.request_id for r in kept})
    assert {r["affinity"] for r in rows.values()} == {"pinned"}


def test_a_warm_prompt_reports_cached_tokens_and_is_priced_at_the_cached_input_price(conv_router):
    from router.catalog import load_catalog, turn_cost_usd

    url, turn_log = conv_router
    call = {"x-nemo-conversation-id": f"call-cost-{uuid.uuid4().hex[:8]}"}
    history = [{"role": "user", "content": f"hello there {uuid.uuid4().hex}"}]
    first = turn(url, call, model="gpt-4o-mini", messages=history, stream_options={"include_usage": True})
    history += [{"role": "assistant", "content": "w1 w2 w3 w4"}, {"role": "user", "content": "and then"}]
    second = turn(url, call, model="gpt-4o-mini", messages=history, stream_options={"include_usage": True})
    usage = json.loads([line for line in second.text.splitlines() if line.startswith("data: {") and '"usage":{' in line][-1][6:])["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 3  # the first message, seen by this endpoint
    rows = wait_for_records(turn_log, {first.request_id, second.request_id})
    warm = rows[second.request_id]
    assert rows[first.request_id]["cached_tokens"] == 0 and warm["cached_tokens"] == 3
    price = load_catalog().get("gpt-4o-mini").price
    expected = turn_cost_usd(price, usage["prompt_tokens"], usage["completion_tokens"], cached_tokens=3)
    assert warm["cost_usd"] == pytest.approx(expected)
    assert expected < turn_cost_usd(price, usage["prompt_tokens"], usage["completion_tokens"])


def test_a_call_that_failed_over_mid_stream_stays_where_the_turn_finished(conv_router):
    url, turn_log = conv_router
    call = {"x-nemo-conversation-id": f"call-fo-{uuid.uuid4().hex[:8]}"}
    first = turn(url, call, model="conv-failover")
    assert first.headers["x-nemo-endpoint"] == "conv-cut"  # the stream started there, then broke
    words = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                    for line in first.text.splitlines() if line.startswith("data: {") and '"choices":[{' in line)
    assert words == " ".join(f"w{i}" for i in range(1, 21))  # continued on conv-next, whole
    wait_pinned(url, "conv-next")  # the outcome that re-pins comes in the caller's next 50 ms batch
    second = turn(url, call, model="conv-failover")
    rows = wait_for_records(turn_log, {first.request_id, second.request_id})
    assert [a["endpoint"] for a in rows[first.request_id]["attempts"]] == ["conv-cut", "conv-next"]
    again = rows[second.request_id]
    assert [a["endpoint"] for a in again["attempts"]] == ["conv-next"] and again["affinity"] == "pinned"
