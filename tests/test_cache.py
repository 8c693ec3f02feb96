"""The response cache: key stability and sensitivity, LRU/TTL/byte bounds
with a fake clock, what is cacheable, and SSE replay. Pure."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.errors import InvalidRequest
from router.providers.chunks import ChunkBuilder, MessageAssembler, usage_dict
from router.response_cache import (
    CacheConfig,
    ResponseCache,
    TurnRecorder,
    cache_key,
    cache_requested,
    entry_from_chunks,
    entry_from_completion,
    replay_completion,
    replay_sse,
)
from router.sse import DONE_DATA, SSEDecoder, encode_json

BODY = {
    "model": "voice-fast",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}],
    "temperature": 0.7,
    "max_tokens": 64,
}
USAGE = usage_dict(12, 3)


class FakeClock:
    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def streamed_chunks(pieces=("Hel", "lo", " world"), finish="stop", usage=USAGE):
    builder = ChunkBuilder("chatcmpl-1", 1700000000, "gpt-4o-mini")
    chunks = [builder.role(), *(builder.content(p) for p in pieces), builder.finish(finish)]
    return chunks + ([builder.usage(usage)] if usage else [])


def sse_bytes(chunks) -> bytes:
    return b"".join(encode_json(c) for c in chunks) + b"data: [DONE]\n\n"


def entry(text="Hello world", **kwargs):
    return entry_from_chunks(streamed_chunks((text,)), **kwargs)


def parse_sse(events: list[bytes]):
    assembler, done, chunks = MessageAssembler(), False, []
    for event in SSEDecoder().feed(b"".join(events)):
        if event.data == DONE_DATA:
            done = True
            continue
        chunk = json.loads(event.data)
        chunks.append(chunk)
        assembler.add(chunk)
    return assembler, done, chunks


# -- the key --------------------------------------------------------------------

def test_the_key_ignores_parameter_order_and_number_spelling():
    reordered = dict(reversed(list(BODY.items())))
    assert cache_key(reordered) == cache_key(BODY)
    assert cache_key({**BODY, "temperature": 1}) == cache_key({**BODY, "temperature": 1.0})
    assert len(cache_key(BODY)) == 64


@pytest.mark.parametrize(
    "extra",
    [
        {"stream": True},
        {"stream_options": {"include_usage": True}},
        {"user": "caller-42"},
        {"nemo_cache": True},
        {"nemo_tags": ["eu"]},
        {"metadata": {"app": "x"}},
        {"store": False},
        {"service_tier": "auto"},
    ],
)
def test_fields_that_do_not_change_the_output_do_not_change_the_key(extra):
    assert cache_key({**BODY, **extra}) == cache_key(BODY)


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.8},
        {"model": "voice-smart"},
        {"messages": [{"role": "user", "content": "Hi?"}]},
        {"max_tokens": 65},
        {"max_completion_tokens": 64},
        {"top_p": 0.9},
        {"seed": 7},
        {"stop": ["\n"]},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"tool_choice": "none"},
        {"response_format": {"type": "json_object"}},
        {"presence_penalty": 0.5},
        {"frequency_penalty": 0.5},
        {"logit_bias": {"50256": -100}},
        {"a_parameter_the_router_does_not_know": 1},
    ],
)
def test_anything_else_changes_the_key(change):
    assert cache_key({**BODY, **change}) != cache_key(BODY)


def test_tags_and_namespace_are_part_of_the_key():
    assert cache_key(BODY, tags=["eu", "vision"]) == cache_key(BODY, tags=("vision", "eu", "eu"))
    assert cache_key(BODY, tags=["eu"]) != cache_key(BODY)
    assert cache_key(BODY, namespace="voice-app") != cache_key(BODY, namespace="batch")


def test_a_request_can_opt_out():
    assert cache_requested(BODY)
    assert cache_requested({**BODY, "nemo_cache": True})
    assert not cache_requested({**BODY, "nemo_cache": False})
    with pytest.raises(InvalidRequest) as caught:
        cache_requested({**BODY, "nemo_cache": "no"})
    assert caught.value.param == "nemo_cache"


# -- the store ------------------------------------------------------------------

def test_least_recently_used_goes_first():
    cache = ResponseCache(max_entries=2, max_bytes=1 << 20, ttl_s=60, clock=FakeClock())
    cache.put("a", entry("a"))
    cache.put("b", entry("b"))
    assert cache.get("a").content == "a"  # a is now the most recent
    cache.put("c", entry("c"))
    assert cache.get("b") is None
    assert cache.get("a").content == "a" and cache.get("c").content == "c"
    assert cache.stats()["evictions"] == 1


def test_entries_expire_after_the_ttl():
    clock = FakeClock()
    cache = ResponseCache(max_entries=10, max_bytes=1 << 20, ttl_s=30, clock=clock)
    cache.put("a", entry())
    clock.now = 29.9
    assert cache.get("a") is not None  # a hit does not extend its life
    clock.now = 30.0
    assert cache.get("a") is None
    assert len(cache) == 0 and cache.size_bytes == 0
    cache.put("a", entry())
    clock.now = 59.9
    assert cache.get("a") is not None  # a new put starts a new life


def test_the_byte_bound_evicts_and_an_oversized_entry_is_refused():
    size = entry("x" * 100).size_bytes
    cache = ResponseCache(max_entries=100, max_bytes=2 * size + size // 2, ttl_s=60, clock=FakeClock())
    for key in "abc":
        assert cache.put(key, entry("x" * 100))
    assert len(cache) == 2 and cache.get("a") is None
    assert cache.size_bytes == 2 * size
    assert not cache.put("big", entry("x" * 10 * size))
    assert cache.stats()["refused"] == 1 and len(cache) == 2


def test_replacing_a_key_keeps_the_byte_count_right():
    cache = ResponseCache(max_entries=10, max_bytes=1 << 20, ttl_s=60, clock=FakeClock())
    cache.put("a", entry("short"))
    cache.put("a", entry("a much longer answer than before"))
    assert len(cache) == 1 and cache.size_bytes == entry("a much longer answer than before").size_bytes
    assert cache.delete("a") and cache.size_bytes == 0


def test_the_cache_is_built_from_config():
    cache = ResponseCache.from_config(CacheConfig(max_entries=1, max_bytes=10_000, max_entry_bytes=500), FakeClock())
    assert not cache.put("big", entry("x" * 600))
    with pytest.raises(ValueError):
        CacheConfig(max_bytes=10, max_entry_bytes=11)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 400), st.floats(0, 20)), max_size=40))
def test_the_bounds_always_hold(operations):
    clock = FakeClock()
    cache = ResponseCache(max_entries=4, max_bytes=1500, ttl_s=30, clock=clock)
    for key, length, gap in operations:
        clock.now += gap
        if length % 3:
            cache.put(key, entry("y" * length))
        else:
            cache.get(key)
        assert len(cache) <= 4
        assert cache.size_bytes <= 1500
        assert cache.size_bytes == sum(s.entry.size_bytes for s in cache._slots.values())


# -- what is cached -------------------------------------------------------------

def test_completed_text_turns_are_cached_tool_calls_and_other_endings_are_not():
    assert entry_from_chunks(streamed_chunks(finish="stop")) is not None
    assert entry_from_chunks(streamed_chunks(finish="length")) is not None
    assert entry_from_chunks(streamed_chunks(finish="content_filter")) is None
    assert entry_from_chunks(streamed_chunks(finish="stop")[:-2]) is None  # no finish
    builder = ChunkBuilder("chatcmpl-2", 1, "m")
    calls = [builder.role(), builder.tool_call(0, call_id="call_1", name="f", arguments="{}"), builder.finish("tool_calls")]
    assert entry_from_chunks(calls) is None
    tool_completion = {"id": "x", "created": 1, "model": "m", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}, "finish_reason": "tool_calls"}]}
    assert entry_from_completion(tool_completion) is None


def test_the_recorder_needs_done_and_no_error_event():
    raw = sse_bytes(streamed_chunks())
    recorder = TurnRecorder(max_bytes=1 << 20)
    for i in range(0, len(raw), 7):  # arbitrary network reads
        recorder.feed(raw[i:i + 7])
    assert recorder.finish().content == "Hello world"
    truncated = TurnRecorder(max_bytes=1 << 20)
    truncated.feed(raw[: raw.index(b"data: [DONE]")])
    assert truncated.finish() is None
    errored = TurnRecorder(max_bytes=1 << 20)
    errored.feed(b"".join(encode_json(c) for c in streamed_chunks()[:2]) + encode_json({"error": {"message": "x"}}) + b"data: [DONE]\n\n")
    assert errored.finish() is None
    too_big = TurnRecorder(max_bytes=len(raw) - 1)
    too_big.feed(raw)
    assert too_big.finish() is None


# -- replay ---------------------------------------------------------------------

def test_a_streamed_turn_replays_as_the_same_sse_text_and_usage():
    recorder = TurnRecorder(max_bytes=1 << 20)
    recorder.feed(sse_bytes(streamed_chunks()))
    cached = recorder.finish(endpoint="catalog:gpt-4o-mini", provider="openai")
    assembler, done, chunks = parse_sse(replay_sse(cached, include_usage=True))
    assert done and assembler.content == "Hello world" and assembler.finish_reason == "stop"
    assert assembler.usage == USAGE
    assert chunks[-1]["choices"] == [] and all(c["usage"] is None for c in chunks[:-1])
    assert cached.endpoint == "catalog:gpt-4o-mini" and cached.usage == USAGE


def test_without_include_usage_the_replay_has_no_usage():
    cached = entry_from_chunks(streamed_chunks())
    assembler, done, chunks = parse_sse(replay_sse(cached, include_usage=False))
    assert done and assembler.content == "Hello world" and assembler.usage is None
    assert all("usage" not in c for c in chunks)


def test_usage_the_client_did_not_see_can_be_given_to_the_recorder():
    recorder = TurnRecorder(max_bytes=1 << 20)
    recorder.feed(sse_bytes(streamed_chunks(usage=None)))
    cached = recorder.finish(usage=USAGE)
    assert parse_sse(replay_sse(cached, include_usage=True))[0].usage == USAGE
    assert replay_completion(cached)["usage"] == USAGE


def test_a_non_streaming_turn_replays_both_ways():
    completion = {
        "id": "chatcmpl-9", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Bonjour."}, "logprobs": None, "finish_reason": "stop"}],
        "usage": USAGE,
    }
    cached = entry_from_completion(completion)
    assert replay_completion(cached) == completion
    assembler, done, chunks = parse_sse(replay_sse(cached, include_usage=True))
    assert done and assembler.content == "Bonjour." and assembler.usage == USAGE
    assert {c["id"] for c in chunks} == {"chatcmpl-9"}


def test_a_streamed_turn_replays_as_a_completion():
    completion = replay_completion(entry_from_chunks(streamed_chunks()), completion_id="chatcmpl-new", created=5)
    assert completion["id"] == "chatcmpl-new" and completion["created"] == 5
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"] == {"role": "assistant", "content": "Hello world", "refusal": None}
    assert completion["usage"] == USAGE


def test_replayed_ids_can_be_fresh():
    events = replay_sse(entry_from_chunks(streamed_chunks()), include_usage=True, completion_id="chatcmpl-fresh")
    assert {c["id"] for c in parse_sse(events)[2]} == {"chatcmpl-fresh"}
