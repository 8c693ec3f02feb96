"""Every translated reply (Anthropic, Gemini), whole and streamed, is what
the official ``openai`` package's types accept: ``ChatCompletion`` and
``ChatCompletionChunk`` validated strictly (no coercion), with the null
fields OpenAI itself always sends (``logprobs``, ``refusal``) and none it
would not (``system_fingerprint``: no translated provider has one). Pure:
provider payloads are generated, translated by the codecs, no network.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from router.providers import TranslatedStream, codec_for
from router.sse import DONE_DATA, SSEDecoder

MODEL = "endpoint-model"

WORDS = st.lists(st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8), max_size=5)
TOOLS = st.lists(st.tuples(st.sampled_from(["get_weather", "hang_up"]),
                           st.dictionaries(st.sampled_from(["city", "n"]), st.integers(0, 9) | st.text(max_size=4), max_size=2)),
                 max_size=2)
COUNT = st.integers(0, 5000)


def strictly(model: type, value: dict[str, Any]) -> None:
    """Validate as the SDK's type, with no coercion (``strict``), after a
    JSON round trip (what the client receives)."""
    model.model_validate(json.loads(json.dumps(value)), strict=True)


def check_completion(completion: dict[str, Any]) -> None:
    strictly(ChatCompletion, completion)
    assert "system_fingerprint" not in completion
    for choice in completion["choices"]:
        assert choice["logprobs"] is None and choice["message"]["refusal"] is None


def check_stream(raw: bytes, provider: str, piece: int, choices: int = 1) -> list[dict[str, Any]]:
    """Translate ``raw`` fed in pieces of ``piece`` bytes; validate each chunk."""
    stream = TranslatedStream(codec_for(provider).stream_translator(MODEL, endpoint="e", choices=choices))
    decoder, events = SSEDecoder(), []
    for start in range(0, len(raw), piece):
        events += stream.feed(decoder.feed(raw[start:start + piece]))
    events += stream.close()
    assert events[-1].data == DONE_DATA
    chunks = [json.loads(e.data) for e in events[:-1]]
    for chunk in chunks:
        strictly(ChatCompletionChunk, chunk)
        assert "system_fingerprint" not in chunk
        assert all(choice["logprobs"] is None for choice in chunk["choices"])
    return chunks


# -- Anthropic -----------------------------------------------------------------


def sse(name: str | None, payload: dict) -> bytes:
    head = f"event: {name}\n".encode() if name else b""
    return head + b"data: " + json.dumps(payload).encode() + b"\n\n"


@st.composite
def anthropic_replies(draw) -> dict[str, Any]:
    return {
        "id": draw(st.sampled_from(["msg_01abc", None])),
        "model": draw(st.sampled_from(["claude-haiku-4-5-20251001", None])),
        "words": draw(WORDS),
        "tools": draw(TOOLS),
        "thinking": draw(st.booleans()),
        "stop_reason": draw(st.sampled_from(["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal", "pause_turn"])),
        "usage": draw(st.none() | st.fixed_dictionaries({"input_tokens": COUNT, "output_tokens": COUNT},
                                                        optional={"cache_read_input_tokens": COUNT})),
    }


def anthropic_message(reply: dict[str, Any]) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "thinking", "thinking": "hmm", "signature": "s"}] if reply["thinking"] else []
    if reply["words"]:
        content.append({"type": "text", "text": "".join(reply["words"])})
    content += [{"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": args} for i, (name, args) in enumerate(reply["tools"])]
    message = {"type": "message", "role": "assistant", "content": content, "stop_reason": reply["stop_reason"]}
    for key in ("id", "model", "usage"):
        if reply[key] is not None:
            message[key] = reply[key]
    return message


def anthropic_stream(reply: dict[str, Any]) -> bytes:
    start = {k: reply[k] for k in ("id", "model") if reply[k] is not None}
    events = [sse("message_start", {"type": "message_start", "message": {
        "type": "message", "role": "assistant", "content": [], **start, "usage": {"input_tokens": 7, "output_tokens": 1}}}),
        sse("ping", {"type": "ping"})]
    index = 0
    if reply["thinking"]:
        events += [sse(None, {"type": "content_block_start", "index": index, "content_block": {"type": "thinking", "thinking": ""}}),
                   sse(None, {"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": "hm"}}),
                   sse(None, {"type": "content_block_stop", "index": index})]
        index += 1
    if reply["words"]:
        events.append(sse(None, {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}))
        events += [sse(None, {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": w}})
                   for w in reply["words"]]
        events.append(sse(None, {"type": "content_block_stop", "index": index}))
        index += 1
    for i, (name, args) in enumerate(reply["tools"]):
        text = json.dumps(args)
        events.append(sse(None, {"type": "content_block_start", "index": index,
                                 "content_block": {"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": {}}}))
        events += [sse(None, {"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": part}})
                   for part in (text[: len(text) // 2], text[len(text) // 2:])]
        events.append(sse(None, {"type": "content_block_stop", "index": index}))
        index += 1
    delta = {"type": "message_delta", "delta": {"stop_reason": reply["stop_reason"], "stop_sequence": None}}
    if reply["usage"] is not None:
        delta["usage"] = {"output_tokens": reply["usage"]["output_tokens"]}
    events += [sse("message_delta", delta), sse("message_stop", {"type": "message_stop"})]
    return b"".join(events)


@settings(max_examples=150, deadline=None)
@given(anthropic_replies())
def test_every_whole_anthropic_reply_is_an_openai_chat_completion(reply):
    completion = codec_for("anthropic").parse_response(json.dumps(anthropic_message(reply)).encode(), endpoint="e", model=MODEL)
    check_completion(completion)
    assert completion["model"] == (reply["model"] or MODEL)


@settings(max_examples=150, deadline=None)
@given(anthropic_replies(), st.integers(1, 200))
def test_every_streamed_anthropic_reply_is_openai_chat_completion_chunks(reply, piece):
    chunks = check_stream(anthropic_stream(reply), "anthropic", piece)
    assert {c["model"] for c in chunks} == {reply["model"] or MODEL}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] is not None


# -- Gemini ----------------------------------------------------------------------


@st.composite
def gemini_replies(draw) -> dict[str, Any]:
    return {
        "response_id": draw(st.sampled_from(["mUNqaOXy", None])),
        "model_version": draw(st.sampled_from(["gemini-2.5-flash", None])),
        "words": draw(WORDS),
        "tools": draw(TOOLS),
        "thought": draw(st.booleans()),
        "finish": draw(st.sampled_from(["STOP", "MAX_TOKENS", "SAFETY", "RECITATION", "OTHER"])),
        "blocked": draw(st.booleans()),
        "candidates": draw(st.integers(1, 3)),  # the request's n
        "usage": draw(st.none() | st.fixed_dictionaries(
            {"promptTokenCount": COUNT, "candidatesTokenCount": COUNT, "totalTokenCount": COUNT},
            optional={"thoughtsTokenCount": COUNT, "cachedContentTokenCount": COUNT})),
    }


def gemini_parts(reply: dict[str, Any], words: list[str]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"text": "thinking...", "thought": True}] if reply["thought"] else []
    parts += [{"text": w} for w in words]
    return parts


def gemini_response(reply: dict[str, Any], parts: list[dict[str, Any]], finish: str | None, usage: bool) -> dict[str, Any]:
    response: dict[str, Any] = {}
    if reply["blocked"]:
        response["promptFeedback"] = {"blockReason": "SAFETY"}
    else:
        response["candidates"] = []
        for index in range(reply["candidates"]):
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": index}
            if finish:
                candidate["finishReason"] = finish
            response["candidates"].append(candidate)
    if usage and reply["usage"] is not None:
        response["usageMetadata"] = reply["usage"]
    if reply["model_version"]:
        response["modelVersion"] = reply["model_version"]
    if reply["response_id"]:
        response["responseId"] = reply["response_id"]
    return response


def gemini_whole(reply: dict[str, Any]) -> dict[str, Any]:
    parts = gemini_parts(reply, ["".join(reply["words"])] if reply["words"] else [])
    parts += [{"functionCall": {"name": name, "args": args}} for name, args in reply["tools"]]
    return gemini_response(reply, parts, reply["finish"], usage=True)


def gemini_stream(reply: dict[str, Any]) -> bytes:
    if reply["blocked"]:
        return sse(None, gemini_response(reply, [], None, usage=True))
    events = [sse(None, gemini_response(reply, gemini_parts(reply, [w]), None, usage=False)) for w in reply["words"]]
    calls = [{"functionCall": {"name": name, "args": args}} for name, args in reply["tools"]]
    events.append(sse(None, gemini_response(reply, calls, reply["finish"], usage=True)))
    return b"".join(events)


@settings(max_examples=150, deadline=None)
@given(gemini_replies())
def test_every_whole_gemini_reply_is_an_openai_chat_completion(reply):
    completion = codec_for("gemini").parse_response(json.dumps(gemini_whole(reply)).encode(), endpoint="e", model=MODEL)
    check_completion(completion)
    assert [c["index"] for c in completion["choices"]] == list(range(1 if reply["blocked"] else reply["candidates"]))
    assert completion["model"] == (reply["model_version"] or MODEL)


@settings(max_examples=150, deadline=None)
@given(gemini_replies(), st.integers(1, 200))
def test_every_streamed_gemini_reply_is_openai_chat_completion_chunks(reply, piece):
    chunks = check_stream(gemini_stream(reply), "gemini", piece, choices=reply["candidates"])
    assert {c["model"] for c in chunks} == {reply["model_version"] or MODEL}
    finished = {c["choices"][0]["index"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]}
    assert finished == set(range(reply["candidates"]))  # every choice ends, a blocked prompt's too


# -- the cache's replay ------------------------------------------------------------


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
def test_a_cached_translated_reply_replays_as_openai_types(provider):
    from router.response_cache import entry_from_completion, replay_completion, replay_sse

    reply = (anthropic_message({"id": "msg_1", "model": None, "words": ["Hi", " there"], "tools": [], "thinking": False,
                                "stop_reason": "end_turn", "usage": {"input_tokens": 3, "output_tokens": 2}})
             if provider == "anthropic" else
             gemini_whole({"response_id": None, "model_version": None, "words": ["Hi"], "tools": [], "thought": False,
                           "finish": "STOP", "blocked": False, "candidates": 1, "usage": None}))
    entry = entry_from_completion(codec_for(provider).parse_response(json.dumps(reply).encode(), model=MODEL))
    check_completion(replay_completion(entry, completion_id="chatcmpl-cache-1"))
    for event in SSEDecoder().feed(b"".join(replay_sse(entry, include_usage=True))):
        if event.data != DONE_DATA:
            strictly(ChatCompletionChunk, json.loads(event.data))
