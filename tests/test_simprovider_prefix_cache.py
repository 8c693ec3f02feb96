"""The simulator's per-profile prompt-prefix cache: pure, and over HTTP
(a conversation resent to the same profile starts sooner and reports
cached tokens; another profile's cache is cold)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from simprovider import SimulatorProcess, start_simulator
from simprovider.prefix_cache import PrefixCache, message_prefixes


def words(message) -> int:
    return len(message["content"].split())


HISTORY = [{"role": "user", "content": "one two three"}, {"role": "assistant", "content": "w1 w2"}]


def test_the_longest_prefix_seen_within_the_ttl_is_cached():
    cache = PrefixCache()
    first = message_prefixes(HISTORY[:1], words)
    assert cache.serve(first, 0.0, ttl_s=10) == 0
    grown = message_prefixes([*HISTORY, {"role": "user", "content": "four five"}], words)
    assert [tokens for _, tokens in grown] == [3, 5, 7]
    assert cache.serve(grown, 5.0, ttl_s=10) == 3  # the first message was seen
    assert cache.serve(grown, 6.0, ttl_s=10) == 7  # the whole prompt now
    assert cache.serve(grown, 16.0, ttl_s=10) == 0  # expired


def test_a_changed_message_breaks_the_prefix_from_there_on():
    cache = PrefixCache()
    cache.serve(message_prefixes(HISTORY, words), 0.0, ttl_s=10)
    edited = [HISTORY[0], {"role": "assistant", "content": "w1 w3"}]
    assert cache.serve(message_prefixes(edited, words), 1.0, ttl_s=10) == 3


def test_the_cache_is_bounded():
    cache = PrefixCache(max_prefixes=4)
    for i in range(10):
        cache.serve(message_prefixes([{"role": "user", "content": f"m{i}"}], words), float(i), ttl_s=100)
    assert len(cache) == 4


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator({}) as process:
        yield process


def first_token_and_usage(sim: SimulatorProcess, profile: str, messages: list) -> tuple[float, dict]:
    body = {"model": "m", "messages": messages, "stream": True, "stream_options": {"include_usage": True}}
    started = time.monotonic()
    first = None
    usage = None
    with httpx.stream("POST", sim.base_url(profile) + "/chat/completions", json=body, timeout=5) as response:
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                first = time.monotonic() - started
            usage = chunk.get("usage") or usage
    return first, usage


def test_a_resent_conversation_is_warm_on_its_profile_only(sim):
    warm, other = f"p{uuid.uuid4().hex[:6]}", f"p{uuid.uuid4().hex[:6]}"
    for name in (warm, other):
        sim.set_behavior(name, ttft_ms=1500, token_interval_ms=1, tokens=2, prefix_cache_ttl_s=60, warm_ttft_factor=0.02)
    cold_s, usage = first_token_and_usage(sim, warm, HISTORY[:1])
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0} and cold_s >= 1.48
    grown = [*HISTORY, {"role": "user", "content": "and again"}]
    warm_s, usage = first_token_and_usage(sim, warm, grown)
    assert usage["prompt_tokens"] == 7 and usage["prompt_tokens_details"] == {"cached_tokens": 3}
    assert warm_s < 0.75  # 1500 ms x 0.02, with room for a loaded machine (the full suite on 2 cores)
    elsewhere_s, usage = first_token_and_usage(sim, other, grown)
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0} and elsewhere_s >= 1.48


def test_a_profile_without_a_cache_reports_no_cached_tokens(sim):
    name = f"p{uuid.uuid4().hex[:6]}"
    sim.set_behavior(name, ttft_ms=5, tokens=2)
    _, usage = first_token_and_usage(sim, name, HISTORY)
    assert "prompt_tokens_details" not in usage
