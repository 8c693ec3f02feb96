"""The response cache: an identical request is answered from memory (a
proper SSE replay for streaming turns), marked in the header and the turn
log; ``nemo_cache: false`` skips it."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from helpers import wait_for_records

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cache_router(router, simulator, tmp_path_factory):
    from ray import serve

    from deployments.app import build_app
    from router.config import parse_config

    turn_log = tmp_path_factory.mktemp("cache-turnlog")
    config = parse_config(
        {
            "model_groups": {"cached": {"endpoints": [{"name": "cache-sim", "base_url": simulator.base_url("backup"), "model": "sim-model"}]}},
            "turn_log": {"sink": "local", "path": str(turn_log), "flush_interval_s": 0.3},
            "deployments": {"tracker_name": "nemo-tracker-cache"},
            "cache": {"enabled": True, "ttl_s": 60},
        }
    )
    serve.run(build_app(config), name="nemo-router-cache", route_prefix="/cache")
    yield f"{router}/cache", turn_log
    serve.delete("nemo-router-cache")


def ask(url: str, content: str, **extra) -> httpx.Response:
    body = {"model": "cached", "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers={"x-request-id": f"cache-{uuid.uuid4().hex[:10]}"}, timeout=20)


def until_hit(url: str, content: str, **extra) -> httpx.Response:
    deadline = time.monotonic() + 10  # the caller fills the cache just after the turn ends
    while True:
        response = ask(url, content, **extra)
        if response.headers.get("x-nemo-cache") == "hit" or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_streaming_turn_is_replayed_from_the_cache(cache_router, simulator):
    url, turn_log = cache_router
    content = f"stream {uuid.uuid4().hex}"
    first = ask(url, content, stream=True, stream_options={"include_usage": True})
    assert first.headers["x-nemo-cache"] == "miss"
    served_before = simulator.stats()["backup"]["requests"]
    hit = until_hit(url, content, stream=True, stream_options={"include_usage": True})
    assert hit.headers["x-nemo-cache"] == "hit"
    assert hit.headers["content-type"].startswith("text/event-stream")
    assert simulator.stats()["backup"]["requests"] == served_before  # no upstream call

    def text(response):
        import json

        events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]), chunks

    first_text, _ = text(first)
    hit_text, hit_chunks = text(hit)
    assert hit_text == first_text == "w1 w2 w3 w4 w5 w6 w7 w8"
    assert hit_chunks[-1]["usage"]["completion_tokens"] == 8

    record = wait_for_records(turn_log, {hit.headers["x-request-id"]})[hit.headers["x-request-id"]]
    assert record["cache_hit"] is True and record["completion_tokens"] == 8


def test_non_streaming_hit_and_the_opt_out(cache_router, simulator):
    url, _ = cache_router
    content = f"plain {uuid.uuid4().hex}"
    assert ask(url, content).headers["x-nemo-cache"] == "miss"
    hit = until_hit(url, content)
    assert hit.headers["x-nemo-cache"] == "hit"
    assert hit.json()["choices"][0]["message"]["content"] == "w1 w2 w3 w4 w5 w6 w7 w8"

    served_before = simulator.stats()["backup"]["requests"]
    skipped = ask(url, content, nemo_cache=False)
    assert skipped.headers["x-nemo-cache"] == "bypass"
    assert simulator.stats()["backup"]["requests"] == served_before + 1

    other = ask(url, content, temperature=0.3)  # a parameter that changes the output: another key
    assert other.headers["x-nemo-cache"] == "miss"
