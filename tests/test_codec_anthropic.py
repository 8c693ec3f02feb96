"""The Anthropic Messages codec, from recorded-style request, reply and stream
payloads (shaped after Anthropic's API reference, version 2023-06-01)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.errors import InvalidRequest, UpstreamDisconnected, UpstreamProtocolError, UpstreamStatusError
from router.providers import AnthropicCodec, MessageAssembler, TranslatedStream, codec_for
from router.sse import SSEDecoder, SSEEvent
from router.stream_watch import StreamWatch


@pytest.fixture
def codec() -> AnthropicCodec:
    tokens = iter(f"t{i}" for i in range(100))
    return AnthropicCodec(token_factory=lambda: next(tokens), clock=lambda: 1_700_000_000.5)


def body_of(codec: AnthropicCodec, request: dict, stream: bool = False) -> tuple[dict, list[str]]:
    raw, notes = codec.request_body({"model": "voice-fast", **request}, "claude-haiku-4-5", stream)
    return json.loads(raw), notes


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


# --- requests --------------------------------------------------------------


def test_path_and_headers(codec):
    assert codec.path("claude-haiku-4-5", stream=True) == "/v1/messages"
    assert codec.headers("sk-ant-x") == {
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
        "x-api-key": "sk-ant-x",
    }
    assert "x-api-key" not in codec.headers(None)
    assert codec_for("anthropic").name == "anthropic"


def test_system_and_multi_turn_messages(codec):
    body, notes = body_of(codec, {
        "messages": [
            {"role": "system", "content": "You are a voice assistant."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in one sentence."}]},
            {"role": "user", "content": "Hi there"},
            {"role": "user", "content": "What time is it?"},
            {"role": "assistant", "content": "It is noon."},
            {"role": "user", "content": "Thanks"},
        ],
    }, stream=True)

    assert body == {
        "model": "claude-haiku-4-5",
        "max_tokens": 1024,
        "system": "You are a voice assistant.\n\nAnswer in one sentence.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hi there"}, {"type": "text", "text": "What time is it?"}]},
            {"role": "assistant", "content": "It is noon."},
            {"role": "user", "content": "Thanks"},
        ],
        "stream": True,
    }
    assert notes == []


def test_sampling_parameters_and_limits(codec):
    body, notes = body_of(codec, {
        "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 64,
        "max_tokens": 999,
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": "\n\n",
        "user": "caller-42",
    })

    assert body["max_tokens"] == 64  # max_completion_tokens wins, as in OpenAI
    assert (body["temperature"], body["top_p"], body["stop_sequences"]) == (0.3, 0.9, ["\n\n"])
    assert body["metadata"] == {"user_id": "caller-42"}
    assert "stream" not in body and notes == []
    assert body_of(codec, {"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b"]})[0]["stop_sequences"] == ["a", "b"]


def test_temperature_above_one_is_clamped_with_a_note(codec):
    body, notes = body_of(codec, {"messages": [{"role": "user", "content": "hi"}], "temperature": 1.6})

    assert body["temperature"] == 1.0
    assert notes == ["anthropic: temperature 1.6 clamped to 1.0"]


def test_unsupported_parameters_are_dropped_with_notes(codec):
    body, notes = body_of(codec, {
        "messages": [{"role": "user", "content": "hi"}],
        "presence_penalty": 0.5, "seed": 7, "logprobs": False, "n": 1, "stream_options": {"include_usage": True},
        "response_format": {"type": "text"}, "nemo_tags": ["x"],
    })

    assert notes == [
        "anthropic: dropped unsupported parameter 'presence_penalty'",
        "anthropic: dropped unsupported parameter 'seed'",
    ]
    assert not {"presence_penalty", "seed", "nemo_tags", "stream_options"} & set(body)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "response_format"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"tool_choice": "required"}, "tool_choice"),
    ],
)
def test_parameters_that_would_change_the_answer_are_400(codec, extra, param):
    with pytest.raises(InvalidRequest) as info:
        body_of(codec, {"messages": [{"role": "user", "content": "hi"}], **extra})

    assert info.value.http_status == 400 and info.value.param == param


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tools_and_tool_choice(codec, choice, expected):
    body, _ = body_of(codec, {"messages": [{"role": "user", "content": "weather?"}], "tools": [WEATHER_TOOL], "tool_choice": choice})

    assert body["tools"] == [{
        "name": "get_weather",
        "description": "Current weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }]
    assert body["tool_choice"] == expected


def test_parallel_tool_calls_false_disables_parallel_tool_use(codec):
    body, notes = body_of(codec, {"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER_TOOL], "parallel_tool_calls": False})

    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert notes == []


def test_tool_calls_and_results_become_tool_use_and_tool_result_blocks(codec):
    body, _ = body_of(codec, {
        "tools": [WEATHER_TOOL],
        "messages": [
            {"role": "user", "content": "Weather in Paris and Oslo?"},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "toolu_01A", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
                {"id": "toolu_01B", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
            ]},
            {"role": "tool", "tool_call_id": "toolu_01A", "content": "18C, sunny"},
            {"role": "tool", "tool_call_id": "toolu_01B", "content": [{"type": "text", "text": "4C, snow"}]},
            {"role": "user", "content": "Which is warmer?"},
        ],
    })

    assert body["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_01B", "name": "get_weather", "input": {"city": "Oslo"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C, sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_01B", "content": "4C, snow"},
            {"type": "text", "text": "Which is warmer?"},
        ]},
    ]


def test_images_and_a_trailing_assistant_prefill(codec):
    body, _ = body_of(codec, {"messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ]},
        {"role": "assistant", "content": "It is a w1 w2 "},
    ]})

    assert body["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    assert body["messages"][1] == {"role": "assistant", "content": "It is a w1 w2"}  # API refuses trailing space


def calling(arguments: str) -> dict:
    return {"messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": arguments}}]},
    ]}


# Python cannot read a 4300+ digit integer, nor nesting past its recursion limit.
@pytest.mark.parametrize("arguments", ["{oops", '{"n":' + "9" * 5000 + "}", "[" * 5000 + "]" * 5000])
def test_bad_tool_call_arguments_are_400(codec, arguments):
    with pytest.raises(InvalidRequest):
        body_of(codec, calling(arguments))


def test_arguments_nested_near_the_recursion_limit_build_or_are_400(codec):
    # Read just under the limit, they sit a few levels deeper in the body,
    # so encoding it can overflow where reading did not (where depends on
    # the stack, hence every depth up to the limit).
    for depth in range(800, 1001):
        try:
            body_of(codec, calling('{"a":' * depth + "1" + "}" * depth))
        except InvalidRequest as error:
            assert error.param is not None


# --- non-streamed replies -----------------------------------------------------

MESSAGE = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-haiku-4-5-20251001",
    "content": [
        {"type": "text", "text": "I'll look that up."},
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 412, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 100, "output_tokens": 58},
}


def test_parse_response_with_text_and_tool_use(codec):
    completion = codec.parse_response(json.dumps(MESSAGE).encode())

    assert completion == {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "claude-haiku-4-5-20251001",
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "I'll look that up.",
                "tool_calls": [{"id": "toolu_01A09q90qw90lq917835lq9", "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}],
                "refusal": None,
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }],
        "usage": {"prompt_tokens": 512, "completion_tokens": 58, "total_tokens": 570,
                  "prompt_tokens_details": {"cached_tokens": 100}},
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [("end_turn", "stop"), ("max_tokens", "length"), ("stop_sequence", "stop"), ("tool_use", "tool_calls"), ("refusal", "content_filter")],
)
def test_stop_reasons(codec, stop_reason, finish_reason):
    message = {**MESSAGE, "content": [{"type": "text", "text": "Hi."}], "stop_reason": stop_reason}

    assert codec.parse_response(json.dumps(message).encode())["choices"][0]["finish_reason"] == finish_reason


@pytest.mark.parametrize("payload", [b"{not json", b"[]", b'{"type": "completion"}'])
def test_unreadable_reply_is_a_protocol_error(codec, payload):
    with pytest.raises(UpstreamProtocolError):
        codec.parse_response(payload, endpoint="claude-a")


@pytest.mark.parametrize(
    "usage",
    [[1], "412", {"input_tokens": "412", "output_tokens": 58}, {"input_tokens": 10**4000, "output_tokens": True}],
)
def test_usage_of_the_wrong_type_reads_as_absent(codec, usage):
    # Usage is metadata: a bad count must not fail a reply that has its answer.
    completion = codec.parse_response(json.dumps({**MESSAGE, "usage": usage}).encode())

    assert completion["choices"][0]["message"]["content"] == "I'll look that up."
    assert completion["usage"]["prompt_tokens"] == 0
    assert completion["usage"]["completion_tokens"] in (0, 58)


@pytest.mark.parametrize(
    "change",
    [
        {"content": [{"type": "text", "text": 5}]},
        {"content": [{"type": "tool_use", "id": ["t"], "name": "f", "input": {}}]},
        {"stop_reason": ["end_turn"]},
        {"id": {"a": 1}},
    ],
)
def test_a_field_of_the_wrong_type_is_a_protocol_error(codec, change):
    with pytest.raises(UpstreamProtocolError):
        codec.parse_response(json.dumps({**MESSAGE, **change}).encode(), endpoint="claude-a")


@pytest.mark.parametrize("payload", [b"[" * 1100 + b"]" * 1100, b'{"type":"message","content":[],"n":' + b"9" * 5000 + b"}"])
def test_unreadably_deep_or_huge_json_is_a_protocol_error(codec, payload):
    with pytest.raises(UpstreamProtocolError):
        codec.parse_response(payload, endpoint="claude-a")


# --- streams ------------------------------------------------------------------

STREAM = b"""event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-haiku-4-5-20251001","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay, let me"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" check the weather."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\": \\"San"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" Francisco\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"""


def events_of(raw: bytes, piece: int = 7) -> list[SSEEvent]:
    """Decode ``raw`` fed in small pieces, as the network would split it."""
    decoder = SSEDecoder()
    return [e for i in range(0, len(raw), piece) for e in decoder.feed(raw[i : i + piece])]


def test_stream_translates_text_tool_call_and_usage(codec):
    translator = codec.stream_translator("claude-haiku-4-5")
    chunks = [c for e in events_of(STREAM) for c in translator.feed(e)] + translator.finish()
    message = MessageAssembler()
    for chunk in chunks:
        message.add(chunk)

    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert {c["id"] for c in chunks} == {"msg_014p7gG3wDgGV9EUtLvnow3U"}
    assert {c["model"] for c in chunks} == {"claude-haiku-4-5-20251001"}
    assert message.content == "Okay, let me check the weather."
    assert message.tool_calls == [{"id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                                   "function": {"name": "get_weather", "arguments": '{"city": "San Francisco"}'}}]
    assert message.finish_reason == translator.finish_reason == "tool_calls"
    assert message.usage == translator.usage == {"prompt_tokens": 472, "completion_tokens": 89, "total_tokens": 561}
    assert chunks[-1]["choices"] == [] and translator.done


def test_translated_stream_is_an_openai_stream_for_stream_watch(codec):
    stream = TranslatedStream(codec.stream_translator("claude-haiku-4-5"))
    watch = StreamWatch("claude-a", forward_usage=False)

    events = stream.feed(events_of(STREAM)) + stream.close()
    forwarded = b"".join(e.raw for e in events if watch.accept(e))

    assert forwarded.endswith(b"data: [DONE]\n\n")
    assert watch.done and watch.saw_content and watch.finish_reason == "tool_calls"
    assert watch.usage is not None and watch.usage.completion_tokens == 89
    assert b'"choices":[]' not in forwarded  # the usage chunk the client did not ask for


def test_stream_cut_before_message_stop_is_a_disconnect(codec):
    translator = codec.stream_translator("claude-haiku-4-5", endpoint="claude-a")
    cut = STREAM[: STREAM.index(b"event: message_delta")]
    for event in events_of(cut):
        translator.feed(event)

    with pytest.raises(UpstreamDisconnected) as info:
        translator.finish()
    assert info.value.endpoint == "claude-a"


def test_mid_stream_overloaded_error_is_retryable(codec):
    translator = codec.stream_translator("claude-haiku-4-5")
    translator.feed(events_of(STREAM)[0])
    error_event = events_of(b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n')[0]

    with pytest.raises(UpstreamStatusError) as info:
        translator.feed(error_event)
    assert (info.value.status_code, info.value.retryable, info.value.provider_error_type) == (529, True, "overloaded_error")


@pytest.mark.parametrize("raw", [b"data: {not json\n\n", b'data: {"type":"content_block_delta","index":0}\n\n'])
def test_malformed_or_out_of_order_events_are_protocol_errors(codec, raw):
    translator = codec.stream_translator("claude-haiku-4-5")

    with pytest.raises(UpstreamProtocolError):
        translator.feed(events_of(raw)[0])


MESSAGE_START = b'data: {"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":"3"}}}\n\n'


@pytest.mark.parametrize(
    "raw",
    [
        b'data: {"type":["message_start"]}\n\n',
        b'data: {"type":"message_start","message":[1]}\n\n',
        b'data: {"type":"content_block_start","index":0,"content_block":"text"}\n\n',
        b'data: {"type":"content_block_start","index":[],"content_block":{"type":"tool_use","id":"t","name":"f"}}\n\n',
        b'data: {"type":"content_block_delta","index":"0","delta":{"type":"input_json_delta","partial_json":"{"}}\n\n',
        b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":7}}\n\n',
        b'data: {"type":"message_delta","delta":{"stop_reason":[]}}\n\n',
    ],
)
def test_stream_events_of_the_wrong_shape_are_protocol_errors(codec, raw):
    translator = codec.stream_translator("claude-haiku-4-5")
    translator.feed(events_of(MESSAGE_START)[0])

    with pytest.raises(UpstreamProtocolError):
        for event in events_of(raw):
            translator.feed(event)


def test_stream_usage_of_the_wrong_type_reads_as_absent(codec):
    translator = codec.stream_translator("claude-haiku-4-5")
    raw = MESSAGE_START + b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":[9]}\n\n'
    raw += b'data: {"type":"message_stop"}\n\n'
    for event in events_of(raw):
        translator.feed(event)

    assert translator.finish() == [] and translator.finish_reason == "stop"
    assert translator.usage == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


# --- error replies ----------------------------------------------------------------


def error_body(kind: str, message: str = "details") -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


@pytest.mark.parametrize(
    ("status", "kind", "retryable", "client_status"),
    [
        (529, "overloaded_error", True, 502),
        (500, "api_error", True, 502),
        (429, "rate_limit_error", True, 502),
        (400, "invalid_request_error", False, 400),
        # The router's own key refused: the endpoint's fault, never relayed as the client's 401.
        (401, "authentication_error", True, 502),
        (413, "request_too_large", False, 413),
        # The type decides when it disagrees with the status:
        (400, "overloaded_error", True, 502),
        (503, "invalid_request_error", False, 400),
    ],
)
def test_errors_are_classified_by_status_and_type(codec, status, kind, retryable, client_status):
    error = codec.error_from_status(status, error_body(kind), None, endpoint="claude-a")

    assert isinstance(error, UpstreamStatusError)
    assert (error.retryable, error.counts_against_health, error.http_status) == (retryable, retryable, client_status)
    assert error.status_code == status and error.endpoint == "claude-a"
    assert error.provider_error_type == kind


def test_error_message_text_is_never_what_classifies(codec):
    sneaky = codec.error_from_status(400, error_body("invalid_request_error", "overloaded, try again later"), None)

    assert not sneaky.retryable


def test_retry_after_and_unstructured_bodies(codec):
    limited = codec.error_from_status(429, error_body("rate_limit_error"), "12")
    gateway = codec.error_from_status(502, b"<html>bad gateway</html>", None)

    assert limited.retry_after_s == 12.0
    assert gateway.retryable and gateway.provider_error_type is None


@pytest.mark.parametrize("body", [b"[" * 1100 + b"]" * 1100, b'{"type":"error","n":' + b"9" * 5000 + b"}", b"\xff\xfe"])
def test_unreadable_error_bodies_are_classified_by_status(codec, body):
    error = codec.error_from_status(529, body, None, endpoint="claude-a")

    assert isinstance(error, UpstreamStatusError) and error.retryable and error.provider_error_type is None


# --- property: any text, any deltas, any network split ----------------------------


def _event(name: str, payload: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()


@settings(max_examples=60, deadline=None)
@given(
    deltas=st.lists(st.text(min_size=1, max_size=12), max_size=8),
    fragments=st.lists(st.text(max_size=6), max_size=5),
    piece=st.integers(min_value=1, max_value=64),
)
def test_any_stream_reassembles_to_what_was_sent(deltas, fragments, piece):
    raw = _event("message_start", {"type": "message_start", "message": {"id": "msg_1", "model": "m", "usage": {"input_tokens": 3}}})
    raw += _event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    for text in deltas:
        raw += _event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})
    raw += _event("content_block_start", {"type": "content_block_start", "index": 1,
                                          "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}})
    for fragment in fragments:
        raw += _event("content_block_delta", {"type": "content_block_delta", "index": 1,
                                              "delta": {"type": "input_json_delta", "partial_json": fragment}})
    raw += _event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}})
    raw += _event("message_stop", {"type": "message_stop"})
    translator = AnthropicCodec().stream_translator("m")
    message = MessageAssembler()

    for chunk in [c for e in events_of(raw, piece) for c in translator.feed(e)] + translator.finish():
        message.add(chunk)

    assert message.content == "".join(deltas)
    assert message.tool_calls[0]["function"] == {"name": "f", "arguments": "".join(fragments)}
    assert message.usage == {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}
