"""The OpenAI-compatible codec: pass-through, behind the same interface."""

from __future__ import annotations

import json

import pytest

from router.errors import UpstreamDisconnected, UpstreamProtocolError, UpstreamStatusError
from router.providers import PROVIDERS, MessageAssembler, OpenAICodec, TranslatedStream, codec_for
from router.sse import SSEDecoder


@pytest.fixture
def codec() -> OpenAICodec:
    return OpenAICodec()


def test_registry_knows_every_provider():
    assert PROVIDERS == ("openai", "anthropic", "gemini")
    assert {codec_for(p).name for p in PROVIDERS} == set(PROVIDERS)
    assert codec_for("openai").passthrough and not codec_for("anthropic").passthrough
    with pytest.raises(ValueError, match="known: openai, anthropic, gemini"):
        codec_for("cohere")


def test_path_headers_and_body(codec):
    request = {"model": "voice-fast", "messages": [{"role": "user", "content": "hi"}], "seed": 3, "nemo_tags": ["x"]}

    raw, notes = codec.request_body(request, "gpt-4o-mini", stream=True)

    assert codec.path("gpt-4o-mini", True) == "/chat/completions"
    assert codec.headers("sk-x") == {"content-type": "application/json", "authorization": "Bearer sk-x"}
    assert json.loads(raw) == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "seed": 3,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert notes == []
    assert json.loads(codec.request_body({**request, "stream": True}, "m", stream=False)[0])["stream"] is False


def test_parse_response_is_the_completion(codec):
    completion = {"id": "chatcmpl-1", "object": "chat.completion", "choices": [], "usage": None}

    assert codec.parse_response(json.dumps(completion).encode()) == completion
    with pytest.raises(UpstreamProtocolError):
        codec.parse_response(b'{"object": "list"}')


@pytest.mark.parametrize(
    "payload",
    [b'{"choices": [1]}', b'{"choices": [{"message": "hi"}]}', b'{"choices": "abc"}',
     b"[" * 1100 + b"]" * 1100, b'{"choices": [], "created": ' + b"9" * 5000 + b"}"],
)
def test_malformed_completion_is_a_protocol_error(codec, payload):
    with pytest.raises(UpstreamProtocolError):
        codec.parse_response(payload, endpoint="oa")


STREAM = (
    b'data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
    b'data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"f","arguments":""}}]},"finish_reason":null}]}\n\n'
    b'data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"n\\":1}"}}]},"finish_reason":null}]}\n\n'
    b'data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n'
    b'data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}\n\n'
    b"data: [DONE]\n\n"
)


def test_stream_translator_returns_chunks_as_sent(codec):
    translator = codec.stream_translator("gpt-4o-mini")
    message = MessageAssembler()
    for event in SSEDecoder().feed(STREAM):
        for chunk in translator.feed(event):
            message.add(chunk)

    assert translator.finish() == [] and translator.done
    assert message.tool_calls == [{"id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"n":1}'}}]
    assert translator.finish_reason == "tool_calls"
    assert translator.usage == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def test_translated_stream_ends_with_exactly_one_done(codec):
    stream = TranslatedStream(codec.stream_translator("gpt-4o-mini"))

    events = stream.feed(SSEDecoder().feed(STREAM)) + stream.close()

    assert [e.data for e in events].count(b"[DONE]") == 1


def test_stream_without_done_is_a_disconnect(codec):
    translator = codec.stream_translator("gpt-4o-mini", endpoint="oa")
    for event in SSEDecoder().feed(STREAM.replace(b"data: [DONE]\n\n", b"")):
        translator.feed(event)

    with pytest.raises(UpstreamDisconnected):
        translator.finish()


@pytest.mark.parametrize(
    "data",
    [b'{"choices": 5}', b'{"choices": "abc"}', b'{"choices": [1]}', b'{"choices": [{"finish_reason": ["stop"]}]}'],
)
def test_stream_chunk_of_the_wrong_shape_is_a_protocol_error(codec, data):
    translator = codec.stream_translator("gpt-4o-mini", endpoint="oa")

    with pytest.raises(UpstreamProtocolError):
        for event in SSEDecoder().feed(b"data: " + data + b"\n\n"):
            translator.feed(event)


def test_stream_usage_that_is_not_an_object_reads_as_absent(codec):
    translator = codec.stream_translator("gpt-4o-mini")
    for event in SSEDecoder().feed(b'data: {"choices": [], "usage": [5]}\n\ndata: [DONE]\n\n'):
        translator.feed(event)

    assert translator.finish() == [] and translator.usage is None


@pytest.mark.parametrize("body", [b"[" * 1100 + b"]" * 1100, b'{"error": {"code": ' + b"9" * 5000 + b"}}", b"[1]", b"\xff"])
def test_unreadable_error_bodies_are_classified_by_status(codec, body):
    error = codec.error_from_status(503, body, None, endpoint="oa")

    assert isinstance(error, UpstreamStatusError) and error.retryable and error.provider_error_type is None


@pytest.mark.parametrize(("status", "retryable"), [(503, True), (429, True), (500, True), (400, False), (404, False)])
def test_errors_are_classified_by_status(codec, status, retryable):
    body = json.dumps({"error": {"message": "m", "type": "server_error", "code": None}}).encode()

    error = codec.error_from_status(status, body, "2", endpoint="oa")

    assert isinstance(error, UpstreamStatusError)
    assert (error.retryable, error.retry_after_s, error.endpoint) == (retryable, 2.0, "oa")
