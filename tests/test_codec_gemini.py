"""The Gemini codec, from recorded-style request, reply and stream payloads
(shaped after the Gemini API v1beta reference; ``alt=sse`` streams use CRLF)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.errors import InvalidRequest, UpstreamDisconnected, UpstreamProtocolError, UpstreamStatusError
from router.providers import GeminiCodec, MessageAssembler, TranslatedStream, codec_for
from router.sse import SSEDecoder, SSEEvent
from router.stream_watch import StreamWatch


@pytest.fixture
def codec() -> GeminiCodec:
    tokens = iter(f"t{i}" for i in range(100))
    return GeminiCodec(token_factory=lambda: next(tokens), clock=lambda: 1_700_000_000.0)


def body_of(codec: GeminiCodec, request: dict) -> tuple[dict, list[str]]:
    raw, notes = codec.request_body({"model": "voice-fast", **request}, "gemini-2.5-flash", True)
    return json.loads(raw), notes


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                       "additionalProperties": False},
    },
}


# --- requests ----------------------------------------------------------------


def test_paths_and_headers(codec):
    assert codec.path("gemini-2.5-flash", stream=False) == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert codec.path("models/gemini-2.5-flash", stream=True) == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert codec.headers("AIza-x") == {"content-type": "application/json", "x-goog-api-key": "AIza-x"}
    assert codec_for("gemini").name == "gemini"


def test_system_multi_turn_and_generation_config(codec):
    body, notes = body_of(codec, {
        "messages": [
            {"role": "system", "content": "You are a voice assistant."},
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "Tell me a joke."}]},
            {"role": "assistant", "content": "Why did the chicken cross the road?"},
            {"role": "user", "content": "Why?"},
        ],
        "temperature": 1.2, "top_p": 0.8, "max_tokens": 100, "stop": ["END"], "seed": 3, "presence_penalty": 0.1,
    })

    assert body == {
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}, {"text": "Tell me a joke."}]},
            {"role": "model", "parts": [{"text": "Why did the chicken cross the road?"}]},
            {"role": "user", "parts": [{"text": "Why?"}]},
        ],
        "systemInstruction": {"parts": [{"text": "You are a voice assistant."}]},
        "generationConfig": {"temperature": 1.2, "topP": 0.8, "seed": 3, "presencePenalty": 0.1,
                             "maxOutputTokens": 100, "stopSequences": ["END"]},
    }
    assert notes == []


def test_max_completion_tokens_wins_and_json_schema_is_enforced(codec):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    body, _ = body_of(codec, {
        "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 5, "max_tokens": 50,
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
    })

    assert body["generationConfig"] == {"maxOutputTokens": 5, "responseMimeType": "application/json",
                                        "responseJsonSchema": schema}


def test_unsupported_parameters_are_dropped_with_notes_or_refused(codec):
    _, notes = body_of(codec, {"messages": [{"role": "user", "content": "x"}], "logit_bias": {"1": 2},
                               "service_tier": "auto", "parallel_tool_calls": True})

    assert notes == ["gemini: dropped unsupported parameter 'logit_bias'", "gemini: dropped unsupported parameter 'service_tier'"]
    for extra in ({"n": 9}, {"logprobs": True, "top_logprobs": 2}):
        with pytest.raises(InvalidRequest):
            body_of(codec, {"messages": [{"role": "user", "content": "x"}], **extra})


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
    ],
)
def test_tools_and_tool_choice(codec, choice, expected):
    body, _ = body_of(codec, {"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER_TOOL], "tool_choice": choice})

    assert body["tools"] == [{"functionDeclarations": [{
        "name": "get_weather",
        "description": "Current weather for a city",
        "parametersJsonSchema": WEATHER_TOOL["function"]["parameters"],
    }]}]
    assert body["toolConfig"] == {"functionCallingConfig": expected}


def test_tool_calls_and_results_become_function_call_and_response_parts(codec):
    body, _ = body_of(codec, {
        "tools": [WEATHER_TOOL],
        "messages": [
            {"role": "user", "content": "Weather in Paris and Oslo?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 18}'},
            {"role": "tool", "tool_call_id": "call_2", "content": "4C, snow"},
        ],
    })

    assert body["contents"][1:] == [
        {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}},
        ]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"temp_c": 18}}},
            {"functionResponse": {"name": "get_weather", "response": {"result": "4C, snow"}}},
        ]},
    ]


@pytest.mark.parametrize("content", ['{"n":' + "9" * 5000 + "}", "[" * 5000 + "]" * 5000])
def test_a_tool_result_python_cannot_read_as_json_is_sent_as_text(codec, content):
    body, _ = body_of(codec, {"messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": content},
    ]})

    assert body["contents"][-1]["parts"] == [{"functionResponse": {"name": "f", "response": {"result": content}}}]


def test_tool_result_without_a_matching_call_is_400(codec):
    with pytest.raises(InvalidRequest) as info:
        body_of(codec, {"messages": [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope", "content": "1"}]})

    assert info.value.param == "messages[1].tool_call_id"


def test_images_inline_only(codec):
    body, _ = body_of(codec, {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
    ]}]})

    assert body["contents"][0]["parts"] == [{"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}}]
    with pytest.raises(InvalidRequest):
        body_of(codec, {"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}]})


# --- non-streamed replies -----------------------------------------------------

RESPONSE = {
    "candidates": [{
        "content": {"parts": [{"text": "Let me check.", "thought": False},
                              {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}],
                    "role": "model"},
        "finishReason": "STOP",
        "index": 0,
    }],
    "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 12, "thoughtsTokenCount": 30, "totalTokenCount": 82},
    "modelVersion": "gemini-2.5-flash",
    "responseId": "mUNqaOXyBvqfz7IPi9ebyQk",
}


def test_parse_response_with_text_and_function_call(codec):
    completion = codec.parse_response(json.dumps(RESPONSE).encode())

    assert completion == {
        "id": "chatcmpl-mUNqaOXyBvqfz7IPi9ebyQk",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gemini-2.5-flash",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "call_t0", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            ], "refusal": None},
            "logprobs": None,
            "finish_reason": "tool_calls",
        }],
        "usage": {"prompt_tokens": 40, "completion_tokens": 42, "total_tokens": 82,
                  "completion_tokens_details": {"reasoning_tokens": 30}},
    }


@pytest.mark.parametrize(("raw", "expected"), [("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("OTHER", "stop")])
def test_finish_reasons(codec, raw, expected):
    response = {"candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}, "finishReason": raw}]}

    assert codec.parse_response(json.dumps(response).encode())["choices"][0]["finish_reason"] == expected


def test_blocked_prompt_is_content_filter(codec):
    blocked = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}}

    choice = codec.parse_response(json.dumps(blocked).encode())["choices"][0]
    assert choice == {"index": 0, "message": {"role": "assistant", "content": "", "refusal": None}, "logprobs": None,
                      "finish_reason": "content_filter"}


@pytest.mark.parametrize(
    "usage",
    [[1], {"promptTokenCount": "40", "candidatesTokenCount": 12.5, "totalTokenCount": -1},
     {"promptTokenCount": 2**53, "thoughtsTokenCount": False}],
)
def test_usage_of_the_wrong_type_reads_as_absent(codec, usage):
    # Usage is metadata: a bad count must not fail a reply that has its answer.
    completion = codec.parse_response(json.dumps({**RESPONSE, "usageMetadata": usage}).encode())

    assert completion["choices"][0]["message"]["content"] == "Let me check."
    assert completion["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


@pytest.mark.parametrize(
    "response",
    [
        {"candidates": {"0": {}}},
        {"candidates": [5]},
        {"candidates": [{"content": [1]}]},
        {"candidates": [{"content": {"parts": "text"}}]},
        {"candidates": [{"content": {"parts": []}, "finishReason": ["STOP"]}]},
        {"promptFeedback": 5},
        {**RESPONSE, "responseId": 7},
    ],
)
def test_a_field_of_the_wrong_type_is_a_protocol_error(codec, response):
    with pytest.raises(UpstreamProtocolError):
        codec.parse_response(json.dumps(response).encode(), endpoint="gem-a")


@pytest.mark.parametrize("payload", [b"[" * 1100 + b"]" * 1100, b'{"candidates":[],"n":' + b"9" * 5000 + b"}"])
def test_unreadably_deep_or_huge_json_is_a_protocol_error(codec, payload):
    with pytest.raises(UpstreamProtocolError):
        codec.parse_response(payload, endpoint="gem-a")


# --- streams ------------------------------------------------------------------


def sse(*payloads: dict) -> bytes:
    return b"".join(b"data: " + json.dumps(p).encode() + b"\r\n\r\n" for p in payloads)


def chunk(parts: list, finish: str | None = None, usage: dict | None = None) -> dict:
    candidate: dict = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    payload: dict = {"candidates": [candidate], "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"}
    if usage:
        payload["usageMetadata"] = usage
    return payload


TEXT_STREAM = sse(
    chunk([{"text": "The quick"}], usage={"promptTokenCount": 9, "totalTokenCount": 9}),
    chunk([{"text": "thinking...", "thought": True}, {"text": " brown fox"}]),
    chunk([{"text": " jumps."}], "STOP", {"promptTokenCount": 9, "candidatesTokenCount": 6, "totalTokenCount": 15}),
)
TOOL_STREAM = sse(
    chunk([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
           {"functionCall": {"name": "get_time", "args": {}}}], "STOP",
          {"promptTokenCount": 30, "candidatesTokenCount": 10, "totalTokenCount": 40}),
)


def events_of(raw: bytes, piece: int = 11) -> list[SSEEvent]:
    decoder = SSEDecoder()
    return [e for i in range(0, len(raw), piece) for e in decoder.feed(raw[i : i + piece])]


def translate(codec: GeminiCodec, raw: bytes) -> tuple[list[dict], MessageAssembler]:
    translator = codec.stream_translator("gemini-2.5-flash")
    chunks = [c for e in events_of(raw) for c in translator.feed(e)] + translator.finish()
    message = MessageAssembler()
    for c in chunks:
        message.add(c)
    return chunks, message


def test_text_stream_translates_to_content_and_usage(codec):
    chunks, message = translate(codec, TEXT_STREAM)

    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert {c["id"] for c in chunks} == {"chatcmpl-resp-1"}
    assert message.content == "The quick brown fox jumps."
    assert message.finish_reason == "stop"
    assert message.usage == {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}
    assert chunks[-1]["choices"] == []


def test_function_calls_arrive_whole_with_generated_ids(codec):
    _, message = translate(codec, TOOL_STREAM)

    assert message.content == ""
    assert message.tool_calls == [
        {"id": "call_t1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
        {"id": "call_t2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]
    assert message.finish_reason == "tool_calls"
    assert message.usage["total_tokens"] == 40


def test_translated_stream_passes_stream_watch(codec):
    stream = TranslatedStream(codec.stream_translator("gemini-2.5-flash"))
    watch = StreamWatch("gem-a", forward_usage=True)

    forwarded = [e for e in stream.feed(events_of(TEXT_STREAM)) + stream.close() if watch.accept(e)]

    assert forwarded[-1].data == b"[DONE]"
    assert watch.done and watch.saw_content and watch.usage.total_tokens == 15


def test_stream_without_finish_reason_is_a_disconnect(codec):
    translator = codec.stream_translator("gemini-2.5-flash", endpoint="gem-a")
    for event in events_of(TEXT_STREAM.split(b"\r\n\r\n")[0] + b"\r\n\r\n"):
        translator.feed(event)

    with pytest.raises(UpstreamDisconnected):
        translator.finish()


def test_error_inside_the_stream_is_classified(codec):
    translator = codec.stream_translator("gemini-2.5-flash")
    raw = sse({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})

    with pytest.raises(UpstreamStatusError) as info:
        translator.feed(events_of(raw)[0])
    assert info.value.retryable and info.value.status_code == 503


def test_malformed_event_is_a_protocol_error(codec):
    with pytest.raises(UpstreamProtocolError):
        codec.stream_translator("m").feed(events_of(b'data: {"candidates": [\r\n\r\n')[0])


@pytest.mark.parametrize("candidate", [{"content": [1]}, {"finishReason": ["STOP"]}, {"content": {"parts": {"text": "x"}}}])
def test_stream_events_of_the_wrong_shape_are_protocol_errors(codec, candidate):
    with pytest.raises(UpstreamProtocolError):
        codec.stream_translator("m").feed(events_of(sse({"candidates": [candidate]}))[0])


def test_stream_token_counts_of_the_wrong_type_read_as_absent(codec):
    usage = {"promptTokenCount": "9", "candidatesTokenCount": 6, "totalTokenCount": None}

    chunks, message = translate(codec, sse(chunk([{"text": "Hi"}], "STOP", usage)))

    assert message.content == "Hi"
    assert message.usage == {"prompt_tokens": 0, "completion_tokens": 6, "total_tokens": 6}


# --- error replies ----------------------------------------------------------------


def google_error(code: int, status: str, message: str = "details", details: list | None = None) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "status": status, "details": details or []}}).encode()


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (503, "UNAVAILABLE", True),
        (500, "INTERNAL", True),
        (429, "RESOURCE_EXHAUSTED", True),
        (504, "DEADLINE_EXCEEDED", True),
        (400, "INVALID_ARGUMENT", False),
        (400, "FAILED_PRECONDITION", False),
        (403, "PERMISSION_DENIED", True),  # the router's key lacks access: the endpoint's fault
        (404, "NOT_FOUND", False),
    ],
)
def test_errors_are_classified_by_google_status(codec, status, kind, retryable):
    error = codec.error_from_status(status, google_error(status, kind), None, endpoint="gem-a")

    assert (error.retryable, error.counts_against_health, error.provider_error_type) == (retryable, retryable, kind)


def test_retry_info_stands_in_for_a_missing_retry_after(codec):
    body = google_error(429, "RESOURCE_EXHAUSTED", "quota", [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "39s"},
    ])

    assert codec.error_from_status(429, body, None).retry_after_s == 39.0
    assert codec.error_from_status(429, body, "5").retry_after_s == 5.0


@pytest.mark.parametrize("details", [5, "39s", [{"retryDelay": "infs"}], [{"retryDelay": "-3s"}], [{"retryDelay": "nans"}]])
def test_unusable_retry_info_is_ignored(codec, details):
    body = json.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": details}}).encode()

    error = codec.error_from_status(429, body, None)

    assert error.retryable and error.retry_after_s is None


@pytest.mark.parametrize("body", [b"[" * 1100 + b"]" * 1100, b'{"error":{"code":' + b"9" * 5000 + b"}}", b"\xff\xfe"])
def test_unreadable_error_bodies_are_classified_by_status(codec, body):
    error = codec.error_from_status(503, body, None, endpoint="gem-a")

    assert isinstance(error, UpstreamStatusError) and error.retryable and error.provider_error_type is None


def test_array_wrapped_error_body(codec):
    body = b"[" + google_error(400, "INVALID_ARGUMENT") + b"]"

    assert codec.error_from_status(400, body, None).provider_error_type == "INVALID_ARGUMENT"


# --- property: any text, any chunking, any network split ----------------------------


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=8),
    args=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
    piece=st.integers(min_value=1, max_value=64),
)
def test_any_stream_reassembles_to_what_was_sent(texts, args, piece):
    raw = sse(*[chunk([{"text": t}]) for t in texts],
              chunk([{"functionCall": {"name": "f", "args": args}}], "STOP",
                    {"promptTokenCount": 2, "candidatesTokenCount": 5, "totalTokenCount": 7}))
    translator = GeminiCodec().stream_translator("m")
    message = MessageAssembler()

    for c in [c for e in events_of(raw, piece) for c in translator.feed(e)] + translator.finish():
        message.add(c)

    assert message.content == "".join(texts)
    assert json.loads(message.tool_calls[0]["function"]["arguments"]) == args
    assert message.finish_reason == "tool_calls" and message.usage["total_tokens"] == 7


# --- several candidates (OpenAI's n) -------------------------------------------


def test_n_asks_for_that_many_candidates_up_to_geminis_limit(codec):
    body, notes = body_of(codec, {"messages": [{"role": "user", "content": "x"}], "n": 3})
    assert body["generationConfig"]["candidateCount"] == 3 and notes == []
    body, _ = body_of(codec, {"messages": [{"role": "user", "content": "x"}], "n": 1})
    assert "candidateCount" not in body.get("generationConfig", {})
    assert codec.max_choices == 8
    with pytest.raises(InvalidRequest) as refused:
        body_of(codec, {"messages": [{"role": "user", "content": "x"}], "n": 9})
    assert refused.value.param == "n" and "8" in refused.value.message


def candidate(index: int, parts: list, finish: str | None = None) -> dict:
    out: dict = {"content": {"parts": parts, "role": "model"}, "index": index}
    if finish:
        out["finishReason"] = finish
    return out


def test_every_candidate_of_a_whole_reply_is_a_choice_under_its_index(codec):
    payload = {
        "candidates": [
            candidate(1, [{"functionCall": {"name": "get_time", "args": {}}}], "STOP"),
            candidate(0, [{"text": "It is noon."}], "MAX_TOKENS"),
        ],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 8, "totalTokenCount": 13},
    }
    completion = codec.parse_response(json.dumps(payload).encode(), model="gemini-2.5-flash")

    assert [c["index"] for c in completion["choices"]] == [0, 1]
    first, second = completion["choices"]
    assert first["message"]["content"] == "It is noon." and first["finish_reason"] == "length"
    assert second["message"]["content"] is None and second["finish_reason"] == "tool_calls"
    assert second["message"]["tool_calls"][0]["function"]["name"] == "get_time"
    assert completion["usage"]["completion_tokens"] == 8


@pytest.mark.parametrize("index", [-1, 64, "0", 1.5, True])
def test_a_candidate_index_that_is_not_a_small_integer_is_a_protocol_error(codec, index):
    payload = {"candidates": [{**candidate(0, [{"text": "x"}], "STOP"), "index": index}]}
    with pytest.raises(UpstreamProtocolError):
        codec.parse_response(json.dumps(payload).encode())


def by_choice(chunks: list[dict]) -> dict[int, MessageAssembler]:
    messages: dict[int, MessageAssembler] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            messages.setdefault(choice["index"], MessageAssembler()).add({"choices": [choice]})
    return messages


def test_a_stream_of_several_candidates_ends_when_every_one_has(codec):
    usage = {"promptTokenCount": 4, "candidatesTokenCount": 6, "totalTokenCount": 10}
    events = events_of(sse(
        {"candidates": [candidate(0, [{"text": "Hel"}])], "responseId": "r2"},
        {"candidates": [candidate(0, [{"text": "lo."}], "STOP"), candidate(1, [{"text": "Hi"}])]},
        {"candidates": [candidate(1, [{"text": " there."}], "MAX_TOKENS")], "usageMetadata": usage},
    ))
    translator = codec.stream_translator("gemini-2.5-flash", choices=2)
    chunks = [c for e in events[:2] for c in translator.feed(e)]
    assert not translator.done  # candidate 1 is still speaking
    chunks += [c for e in events[2:] for c in translator.feed(e)] + translator.finish()

    messages = by_choice(chunks)
    assert messages[0].content == "Hello." and messages[0].finish_reason == "stop"
    assert messages[1].content == "Hi there." and messages[1].finish_reason == "length"
    roles = [c["choices"][0]["index"] for c in chunks if c["choices"] and c["choices"][0]["delta"].get("role")]
    assert roles == [0, 1]  # each choice opens with its own role delta
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 10
    assert translator.finish_reason == "stop"  # the first choice's


def test_a_stream_cut_before_every_candidate_finished_is_a_disconnect(codec):
    translator = codec.stream_translator("gemini-2.5-flash", choices=2)
    for event in events_of(sse({"candidates": [candidate(0, [{"text": "Hi."}], "STOP")]})):
        translator.feed(event)
    with pytest.raises(UpstreamDisconnected):
        translator.finish()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=6), min_size=2, max_size=4), st.randoms())
def test_interleaved_candidates_each_reassemble_gap_free(texts, rng):
    """However the candidates' pieces interleave across events, each choice
    spells exactly its candidate's text, and the stream ends only at the end."""
    left = {index: list(words) for index, words in enumerate(texts)}
    merged = []  # a random merge of the candidates' pieces, each candidate's in order
    while left:
        index = rng.choice(sorted(left))
        piece = left[index].pop(0)
        merged.append((index, piece, not left[index]))
        if not left[index]:
            del left[index]
    translator = GeminiCodec().stream_translator("m", choices=len(texts))
    chunks = []
    for position, (index, piece, last) in enumerate(merged):
        event = {"candidates": [candidate(index, [{"text": piece}], "STOP" if last else None)]}
        chunks += [c for e in events_of(sse(event)) for c in translator.feed(e)]
        assert translator.done is (position == len(merged) - 1)
    chunks += translator.finish()
    messages = by_choice(chunks)
    assert {index: m.content for index, m in messages.items()} == {index: "".join(words) for index, words in enumerate(texts)}
