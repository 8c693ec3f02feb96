"""The simulator's Anthropic and Gemini routes, over real HTTP, read back
through the router's own codecs: whatever the format, an OpenAI request
comes back as the OpenAI chunks of "w1 ... wN", the tool call, the usage.

One simulator process serves the module; each test that changes behaviour
uses its own profile. Every wait is bounded by an httpx timeout.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from router.errors import UpstreamDisconnected, UpstreamProtocolError, UpstreamStatusError
from router.providers import PROVIDERS, MessageAssembler, StreamTranslator, codec_for
from router.sse import SSEDecoder
from simprovider import BEHAVIOR_HEADER, SimulatorProcess, start_simulator

MODEL = "sim-model"
SHORT_TIMEOUT = httpx.Timeout(5.0, read=0.5)
TOOLS = [
    {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}}}},
    {"type": "function", "function": {"name": "other", "parameters": {"type": "object", "properties": {}}}},
]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator({"quick": {"ttft_ms": 5, "token_interval_ms": 1, "tokens": 6}}) as process:
        yield process


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as c:
        yield c


def fresh_profile(sim: SimulatorProcess, **fields: Any) -> str:
    name = f"f{uuid.uuid4().hex[:8]}"
    sim.set_behavior(name, **{"ttft_ms": 5, "token_interval_ms": 1, "tokens": 6, **fields})
    return name


def numbered(first: int, last: int) -> str:
    return "".join(f"w{i}" if i == 1 else f" w{i}" for i in range(first, last + 1))


def url_of(sim: SimulatorProcess, provider: str, profile: str, stream: bool) -> str:
    base = sim.base_url(profile) if provider == "openai" else sim.root_url(profile)
    return base + codec_for(provider).path(MODEL, stream)


def chat(content: str = "say four words please", **extra: Any) -> dict[str, Any]:
    return {"model": "voice-fast", "messages": [{"role": "user", "content": content}], **extra}


def stream_through_codec(
    sim, client, provider: str, profile: str, request: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[MessageAssembler, StreamTranslator]:
    """POST the translated request, feed the reply through the codec's
    translator, and fold the OpenAI chunks it returns."""
    codec = codec_for(provider)
    body, _ = codec.request_body(request, MODEL, True)
    translator = codec.stream_translator(MODEL)
    decoder, message = SSEDecoder(), MessageAssembler()
    url = url_of(sim, provider, profile, True)
    with client.stream("POST", url, content=body, headers={**codec.headers("sk-sim"), **(headers or {})}) as response:
        assert response.status_code == 200, response.read()
        for raw in response.iter_raw():
            for event in decoder.feed(raw):
                for chunk in translator.feed(event):
                    message.add(chunk)
    for chunk in translator.finish():
        message.add(chunk)
    return message, translator


def post_through_codec(sim, client, provider: str, profile: str, request: dict[str, Any]) -> httpx.Response:
    codec = codec_for(provider)
    body, _ = codec.request_body(request, MODEL, False)
    return client.post(url_of(sim, provider, profile, False), content=body, headers=codec.headers("sk-sim"))


# --- every format, read back through the codecs -------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream_reassembles_into_numbered_words_with_usage(sim, client, provider):
    message, translator = stream_through_codec(sim, client, provider, "quick", chat())

    assert message.content == numbered(1, 6)
    assert message.tool_calls == []
    assert translator.finish_reason == "stop"
    assert translator.usage == {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_tool_call_in_every_format(sim, client, provider):
    message, translator = stream_through_codec(sim, client, provider, "quick", chat("please call a tool", tools=TOOLS))

    assert message.content == ""
    [call] = message.tool_calls
    assert call["id"] and call["function"] == {"name": "lookup", "arguments": '{"n":1}'}
    assert translator.finish_reason == "tool_calls"
    assert translator.usage["completion_tokens"] == 5


@pytest.mark.parametrize("provider", PROVIDERS)
def test_after_the_tool_result_the_reply_is_text(sim, client, provider):
    request = {"model": "voice-fast", "tools": TOOLS, "messages": [
        {"role": "user", "content": "please call a tool"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"n":1}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"answer": 42}'},
    ]}

    message, translator = stream_through_codec(sim, client, provider, "quick", request)

    assert message.content == numbered(1, 6) and translator.finish_reason == "stop"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_behavior_tool_call_needs_no_magic_words(sim, client, provider):
    override = {BEHAVIOR_HEADER: json.dumps({"tool_call": True})}

    message, _ = stream_through_codec(sim, client, provider, "quick", chat(tools=TOOLS), headers=override)
    without_tools, _ = stream_through_codec(sim, client, provider, "quick", chat(), headers=override)

    assert message.tool_calls[0]["function"]["name"] == "lookup"
    assert without_tools.content == numbered(1, 6)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_partial_assistant_text_is_continued_without_gap(sim, client, provider):
    request = {"model": "voice-fast", "messages": [
        {"role": "user", "content": "count"},
        {"role": "assistant", "content": "w1 w2 w3 "},
    ]}

    message, _ = stream_through_codec(sim, client, provider, "quick", request)

    assert message.content == numbered(4, 6)
    assert "w1 w2 w3" + message.content == numbered(1, 6)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_non_streamed_replies_parse_into_completions(sim, client, provider):
    codec = codec_for(provider)

    text = codec.parse_response(post_through_codec(sim, client, provider, "quick", chat(max_tokens=3)).content)
    tool = codec.parse_response(post_through_codec(sim, client, provider, "quick", chat("call a tool", tools=TOOLS)).content)

    assert text["choices"][0]["message"]["content"] == numbered(1, 3)
    assert text["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    assert tool["choices"][0]["finish_reason"] == "tool_calls"
    assert tool["choices"][0]["message"]["tool_calls"][0]["function"] == {"name": "lookup", "arguments": '{"n":1}'}


def test_gemini_candidate_count_gives_every_candidate_whole_and_streamed(sim, client):
    """``n`` as ``candidateCount``: the simulated Gemini answers with that many
    candidates, and the codec reads each back as the choice of its index."""
    codec = codec_for("gemini")
    whole = codec.parse_response(post_through_codec(sim, client, "gemini", "quick", chat(max_tokens=3, n=2)).content)
    assert [(c["index"], c["message"]["content"]) for c in whole["choices"]] == [(0, numbered(1, 3)), (1, numbered(1, 3))]
    assert whole["usage"]["completion_tokens"] == 6

    body, _ = codec.request_body(chat(n=3), MODEL, True)
    translator, texts = codec.stream_translator(MODEL, choices=3), {}
    decoder = SSEDecoder()
    with client.stream("POST", url_of(sim, "gemini", "quick", True), content=body, headers=codec.headers("sk-sim")) as response:
        for raw in response.iter_raw():
            for event in decoder.feed(raw):
                for chunk in translator.feed(event):
                    for choice in chunk["choices"]:
                        texts[choice["index"]] = texts.get(choice["index"], "") + (choice["delta"].get("content") or "")
    translator.finish()
    assert texts == {0: numbered(1, 6), 1: numbered(1, 6), 2: numbered(1, 6)}
    assert translator.usage["completion_tokens"] == 18


# --- failures, in each format's own error shapes -------------------------------


@pytest.mark.parametrize(
    ("provider", "failure", "status", "kind", "retryable"),
    [
        ("anthropic", "http_503", 503, "overloaded_error", True),
        ("anthropic", "http_529", 529, "overloaded_error", True),
        ("anthropic", "http_429", 429, "rate_limit_error", True),
        ("anthropic", "http_500", 500, "api_error", True),  # no Retry-After with 500
        ("gemini", "http_503", 503, "UNAVAILABLE", True),
        ("gemini", "http_429", 429, "RESOURCE_EXHAUSTED", True),
        ("gemini", "http_500", 500, "INTERNAL", True),
    ],
)
def test_http_failures_speak_the_providers_error_format(sim, client, provider, failure, status, kind, retryable):
    profile = fresh_profile(sim, failure=failure, retry_after_s=3)

    response = post_through_codec(sim, client, provider, profile, chat())
    error = codec_for(provider).error_from_status(status, response.content, response.headers.get("retry-after"))

    assert response.status_code == status
    assert isinstance(error, UpstreamStatusError)
    assert (error.provider_error_type, error.retryable) == (kind, retryable)
    assert error.retry_after_s == (None if status == 500 else 3.0)


def test_gemini_429_carries_retry_info(sim, client):
    profile = fresh_profile(sim, failure="http_429", retry_after_s=7)

    response = post_through_codec(sim, client, "gemini", profile, chat())

    assert response.json()["error"]["details"] == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}
    ]
    assert codec_for("gemini").error_from_status(429, response.content, None).retry_after_s == 7.0


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
def test_drop_after_cuts_the_stream_and_the_translator_says_so(sim, client, provider):
    profile = fresh_profile(sim, failure="drop_after", drop_after_tokens=3)
    codec = codec_for(provider)
    body, _ = codec.request_body(chat(), MODEL, True)
    translator, decoder, message = codec.stream_translator(MODEL), SSEDecoder(), MessageAssembler()

    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream("POST", url_of(sim, provider, profile, True), content=body, headers=codec.headers(None)) as r:
            for raw in r.iter_raw():
                for event in decoder.feed(raw):
                    for chunk in translator.feed(event):
                        message.add(chunk)

    assert message.content == numbered(1, 3)
    with pytest.raises(UpstreamDisconnected):
        translator.finish()


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
def test_malformed_event_is_a_protocol_error(sim, client, provider):
    profile = fresh_profile(sim, failure="malformed", drop_after_tokens=2)

    with pytest.raises(UpstreamProtocolError):
        stream_through_codec(sim, client, provider, profile, chat())


def test_hang_on_the_gemini_route(sim):
    profile = fresh_profile(sim, failure="hang")
    codec = codec_for("gemini")
    body, _ = codec.request_body(chat(), MODEL, True)

    with httpx.Client(timeout=SHORT_TIMEOUT) as short_client:
        with pytest.raises(httpx.ReadTimeout):
            short_client.post(url_of(sim, "gemini", profile, True), content=body, headers=codec.headers(None))


# --- wire details a translating client could get wrong --------------------------


def test_anthropic_event_sequence(sim, client):
    body, _ = codec_for("anthropic").request_body(chat(), MODEL, True)
    with client.stream("POST", sim.root_url("quick") + "/v1/messages", content=body,
                       headers=codec_for("anthropic").headers(None)) as response:
        names = [e.event for e in SSEDecoder().feed(response.read())]

    assert response.headers["content-type"].startswith("text/event-stream")
    assert names == ["message_start", "ping", "content_block_start", *["content_block_delta"] * 6,
                     "content_block_stop", "message_delta", "message_stop"]


def test_gemini_stream_uses_crlf_and_has_no_done_marker(sim, client):
    body, _ = codec_for("gemini").request_body(chat(), MODEL, True)

    raw = client.post(url_of(sim, "gemini", "quick", True), content=body).content

    assert raw.count(b"\r\n\r\n") == 7 and b"[DONE]" not in raw
    assert json.loads(raw.split(b"\r\n\r\n")[-2][len(b"data: "):])["candidates"][0]["finishReason"] == "STOP"


@pytest.mark.parametrize(
    ("path", "body", "headers", "status"),
    [
        ("/v1/messages", {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}, {}, 400),
        ("/v1/messages", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, {"anthropic-version": "2023-06-01"}, 400),
        ("/v1beta/models/m:streamGenerateContent", {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}, {}, 400),
        ("/v1beta/models/m:generateContent", {"contents": []}, {}, 400),
        ("/v1beta/models/m:countTokens", {"contents": []}, {}, 404),
    ],
)
def test_requests_the_real_api_would_refuse(sim, client, path, body, headers, status):
    response = client.post(sim.root_url("quick") + path, json=body, headers=headers)

    assert response.status_code == status
    if status == 400:
        error = response.json()["error"]
        assert error.get("type") == "invalid_request_error" or error.get("status") == "INVALID_ARGUMENT"


def test_default_profile_serves_every_format_without_a_prefix(sim, client):
    anthropic = client.post(sim.url + "/v1/messages", headers={"anthropic-version": "2023-06-01"},
                            json={"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})
    gemini = client.post(sim.url + "/v1beta/models/m:generateContent",
                         json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})

    assert anthropic.json()["content"] == [{"type": "text", "text": "w1 w2"}]
    assert gemini.headers["x-sim-profile"] == "default"
    assert gemini.json()["candidates"][0]["content"]["parts"][0]["text"] == numbered(1, 20)
