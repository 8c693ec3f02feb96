"""The measured alternatives to the design card's shape, opt-in by config:
``planning: snapshot`` (the ingress reuses the tracker's latest plan and
reports in-flight turns in batches) and ``upstream_calls: ingress`` (no
provider-caller hop). Same turn, same failover, same turn log, same
cancellation as the default shape."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from helpers import wait_for_records

pytestmark = pytest.mark.ray

USER = [{"role": "user", "content": "hello"}]
APP = "nemo-router-lean"


@pytest.fixture(scope="module")
def lean_router(router, simulator, tmp_path_factory):
    from ray import serve

    from deployments.app import build_app
    from router.config import parse_config

    turn_log = tmp_path_factory.mktemp("lean-turnlog")
    ep = lambda name, profile: {"name": name, "base_url": simulator.base_url(profile), "model": "sim-model"}  # noqa: E731
    config = parse_config(
        {
            "model_groups": {
                "lean": {"strategy": "ordered", "endpoints": [ep("lean-ok", "backup")]},
                "lean-failover": {
                    "strategy": "ordered",
                    "breaker": {"consecutive_failures": 10_000, "min_requests": 10_000},
                    "endpoints": [ep("lean-503", "always-503"), ep("lean-backup", "backup")],
                },
                "lean-long": {"strategy": "ordered", "endpoints": [ep("lean-slow", "lean-slow")]},
            },
            "turn_log": {"sink": "local", "path": str(turn_log), "flush_interval_s": 0.3},
            "deployments": {
                "tracker_name": "nemo-tracker-lean",
                "planning": "snapshot",
                "snapshot_interval_s": 0.05,
                "upstream_calls": "ingress",
            },
            "cache": {"enabled": False},
            "metrics": {"enabled": False},
        }
    )
    serve.run(build_app(config), name=APP, route_prefix="/lean")
    yield f"{router}/lean", turn_log
    serve.delete(APP)


def routing(url: str) -> dict:
    return httpx.get(f"{url}/v1/routing", timeout=10).json()["endpoints"]


def tracker_in_flight(endpoint: str) -> int:
    # Straight from the tracker actor, not through the ingress that is
    # serving the turn being watched.
    import ray

    tracker = ray.get_actor("nemo-tracker-lean", namespace="nemo-router")
    return ray.get(tracker.snapshot.remote(), timeout=10)[endpoint]["in_flight"]


def test_the_lean_app_has_no_caller_deployment_and_streams_through_the_official_client(lean_router):
    from openai import OpenAI
    from ray import serve

    url, turn_log = lean_router
    deployments = serve.status().applications[APP].deployments
    assert set(deployments) == {"Ingress"}

    client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=20)
    ids = [f"lean-{uuid.uuid4().hex[:8]}" for _ in range(6)]
    for request_id in ids:
        raw = client.chat.completions.with_raw_response.create(
            model="lean", messages=USER, stream=True, stream_options={"include_usage": True},
            extra_headers={"x-request-id": request_id},
        )
        assert raw.headers["x-nemo-endpoint"] == "lean-ok"
        chunks = list(raw.parse())
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == " ".join(f"w{i}" for i in range(1, 9))
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8
    records = wait_for_records(turn_log, set(ids))
    assert {r["endpoint"] for r in records.values()} == {"lean-ok"}
    assert all(r["status"] == "ok" and r["ttft_s"] > 0 for r in records.values())

    # Snapshot planning reserves each turn at the tracker (in batches) and the
    # outcomes release them: the counts balance, none leaks, none goes negative.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (routing(url)["lean-ok"]["in_flight"] != 0 or routing(url)["lean-ok"]["turns"] < 6):
        time.sleep(0.1)
    state = routing(url)["lean-ok"]
    assert state["in_flight"] == 0 and state["turns"] >= 6


def test_failover_works_in_process(lean_router):
    url, turn_log = lean_router
    request_id = f"lean-fo-{uuid.uuid4().hex[:8]}"
    response = httpx.post(
        f"{url}/v1/chat/completions", json={"model": "lean-failover", "messages": USER},
        headers={"x-request-id": request_id}, timeout=20,
    )
    assert response.status_code == 200 and response.headers["x-nemo-endpoint"] == "lean-backup"
    assert response.json()["choices"][0]["message"]["content"].startswith("w1 ")
    record = wait_for_records(turn_log, {request_id})[request_id]
    assert [a["outcome"] for a in record["attempts"]] == ["upstream_5xx", "ok"]


def test_a_turn_in_flight_is_visible_to_the_tracker_and_a_hang_up_closes_the_upstream(lean_router, simulator):
    url, turn_log = lean_router
    with httpx.Client(timeout=10) as client:
        for turn in ("planned", "from the snapshot"):  # the first turn of a kind plans with the tracker
            request_id = f"lean-cancel-{uuid.uuid4().hex[:8]}"
            with client.stream("POST", f"{url}/v1/chat/completions", json={"model": "lean-long", "messages": USER, "stream": True},
                               headers={"x-request-id": request_id}) as response:
                assert response.headers["x-nemo-endpoint"] == "lean-slow"
                # Keep reading, as a voice client does, and look at the
                # tracker between words (a piece every 200 ms).
                seen, deadline = [], time.monotonic() + 3
                for _ in response.iter_lines():
                    seen.append(tracker_in_flight("lean-slow"))
                    if seen[-2:] == [1, 1] or time.monotonic() > deadline:
                        break
                assert seen[-2:] == [1, 1], f"turn {turn}: in flight {seen}"
            # Hung up in the middle of a 6 s stream: the upstream is closed.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and simulator.stats()["lean-slow"]["in_flight"] > 0:
                time.sleep(0.05)
            assert simulator.stats()["lean-slow"]["in_flight"] == 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and tracker_in_flight("lean-slow") != 0:
        time.sleep(0.1)
    assert tracker_in_flight("lean-slow") == 0
