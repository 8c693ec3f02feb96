"""Property tests for the parsers that read bytes the router does not control.

A client's body: ``parse_chat_request`` returns, or raises a ``ClientError``
whose reply is OpenAI's error object with a 4xx status; and what it accepts
is safe for everything downstream (tags, cache key, pickling, the upstream
body, the error reply's own encoding). An upstream's reply: each provider
codec's ``parse_response``, ``error_from_status`` and stream translator
return, or raise an ``UpstreamError``; nothing else escapes. Pure, no Ray.
"""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from router.errors import ClientError, UpstreamError
from router.openai_wire import ChatRequest, drop_client_overrides, parse_chat_request, upstream_body
from router.providers import PROVIDERS, codec_for
from router.response_cache.key import cache_key, cache_requested
from router.sse import SSEDecoder
from router.tags import parse_tags

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- JSON-ish values ------------------------------------------------------------

OPENAI_PARAMS = [
    "model", "messages", "stream", "stream_options", "temperature", "top_p", "max_tokens",
    "max_completion_tokens", "n", "tools", "tool_choice", "response_format", "seed", "stop", "user",
    "logit_bias", "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty",
    "parallel_tool_calls", "metadata", "store", "service_tier", "reasoning_effort", "modalities",
    "nemo_tags", "nemo_cache", "api_key", "base_url", "extra_headers",
]
# Names that mean something to pydantic or Python, as extra fields.
ODD_KEYS = ["__class__", "__dict__", "__pydantic_extra__", "model_config", "model_fields", "include_usage",
            "role", "content", "", " ", "\u0000", "caf\u00e9", "\ud800"]

# Surrogates included: json.dumps writes them as \ud800 escapes.
any_char = st.characters(codec=None) | st.characters(categories=["Cs"])
texts = st.text(any_char, max_size=20) | st.sampled_from(["", "user", "assistant", "robot", "1", "true", "null"])
keys = st.sampled_from(OPENAI_PARAMS + ODD_KEYS) | st.text(any_char, max_size=8)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([float("nan"), float("inf"), -float("inf")])  # json.dumps writes non-JSON literals
    | texts
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4), max_leaves=20
)

VALID_ROLES = ["system", "developer", "user", "assistant", "tool", "function"]
good_messages = st.fixed_dictionaries({"role": st.sampled_from(VALID_ROLES)}, optional={"content": texts | json_values})
any_messages = st.fixed_dictionaries(
    {}, optional={"role": st.sampled_from([*VALID_ROLES, "robot", ""]) | json_values, "content": json_values,
                  "name": json_values, "tool_calls": json_values, "tool_call_id": json_values},
) | json_values


@st.composite
def chat_bodies(draw) -> Any:
    """Mostly a valid chat request with a few fields of arbitrary type (a
    real parameter name or not); sometimes broken at its core or any JSON."""
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return draw(json_values)
    body: dict[str, Any] = {
        "model": draw(st.text(any_char, min_size=1, max_size=10)),
        "messages": draw(st.lists(good_messages, min_size=1, max_size=3)),
    }
    if shape == 1:
        body["messages"] = draw(st.lists(any_messages, max_size=3) | json_values)
    if shape == 2:
        body["model"] = draw(json_values)
    if shape in (3, 4):
        body["nemo_tags"] = draw(st.lists(texts, max_size=3) | texts | json_values)
    body.update(draw(st.dictionaries(keys, json_values, max_size=4)))
    return body


def encode(value: Any, ascii_only: bool) -> bytes:
    # surrogatepass: with ensure_ascii=False a lone surrogate becomes the raw
    # bytes ED A0 80, which is what a careless client library would send.
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


# Raw JSON text json.dumps cannot produce: spliced in where a value was.
RAW_LITERALS = [
    b"9" * 5000, b"-" + b"1" * 4301, b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400", b"1" * 4300,
    b"[" * 70 + b"]" * 70, b"[" * 900 + b"]" * 900, b"[" * 3000 + b"]" * 3000, b'{"a":' * 200 + b"1" + b"}" * 200,
    b'"\\ud800"', b'"\\udfff\\ud800"', b'"\xed\xa0\x80"', b'"\xff"', b'"\\u0000"', b'"\\ud83d\\ude00"',
]
MARK = "\u2603raw\u2603"


@st.composite
def with_raw_literal(draw, values) -> bytes:
    """A value encoded as JSON with one scalar replaced by a raw literal."""
    value = draw(values)
    marked = replace_somewhere(draw, value, MARK)
    text = encode(marked, ascii_only=False)
    return text.replace(json.dumps(MARK, ensure_ascii=False).encode(), draw(st.sampled_from(RAW_LITERALS)), 1)


def replace_somewhere(draw, value: Any, replacement: Any) -> Any:
    """A copy of ``value`` with one randomly chosen node replaced."""
    value = copy.deepcopy(value)
    if not isinstance(value, (dict, list)) or not value or draw(st.integers(0, 5)) == 0:
        return replacement
    holder: Any = value
    while True:
        slot = draw(st.sampled_from(sorted(holder, key=repr) if isinstance(holder, dict) else range(len(holder))))
        child = holder[slot]
        if not isinstance(child, (dict, list)) or not child or draw(st.integers(0, 2)) == 0:
            holder[slot] = replacement
            return value
        holder = child


@st.composite
def truncated(draw, values) -> bytes:
    text = encode(draw(values), ascii_only=draw(st.booleans()))
    return text[: draw(st.integers(0, max(0, len(text) - 1)))]


@st.composite
def deeply_nested(draw) -> bytes:
    depth = draw(st.integers(1, 3000))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"k":', b"}"), (b'[{"a":', b"}]")]))
    inner = opener * depth + draw(st.sampled_from([b"1", b"[]", b"{}", b'"x"'])) + closer * depth
    field = draw(st.sampled_from([b"metadata", b"tools", b"messages", b"nemo_tags", b"model", b"x"]))
    if draw(st.booleans()):
        return inner
    return b'{"model":"m","messages":[{"role":"user","content":"hi"}],"' + field + b'":' + inner + b"}"


plain_bodies = st.builds(encode, chat_bodies(), st.booleans())
request_bodies = st.one_of(
    plain_bodies, plain_bodies, plain_bodies, plain_bodies,
    with_raw_literal(chat_bodies()),
    truncated(chat_bodies()),
    deeply_nested(),
    st.binary(max_size=200),
)


def strict_json(data: bytes) -> Any:
    """RFC 8259 JSON only: no NaN or Infinity, valid UTF-8."""
    return json.loads(data.decode("utf-8"), parse_constant=lambda name: pytest.fail(f"non-JSON literal {name}"))


def assert_openai_client_error(error: ClientError) -> None:
    reply = error.to_openai()
    assert set(reply) == {"error"} and set(reply["error"]) == {"message", "type", "param", "code"}
    assert 400 <= error.http_status <= 499
    # How Starlette's JSONResponse encodes it: must not fail on what the client sent.
    json.dumps(reply, ensure_ascii=False, allow_nan=False).encode("utf-8")


# -- client bodies ---------------------------------------------------------------


@FUZZ
@given(request_bodies)
@example(b'{"model":"m","messages":[{"role":"user","content":"x"}],"\\ud800":' + b"[" * 80 + b"]" * 80 + b"}")
@example(b'{"model":"m","messages":[{"role":"user","content":"x"}],"nemo_tags":5}')
@example(b'{"model":"m","messages":[{"role":"user","content":"x"}],"seed":' + b"9" * 5000 + b"}")
@example(b"\xef\xbb\xbf{}")  # a UTF-8 byte-order mark
@example('{"model":"m","messages":[{"role":"user","content":"x"}]}'.encode("utf-16"))
def test_a_client_body_is_accepted_whole_or_refused_with_a_4xx(payload):
    try:
        chat, raw = parse_chat_request(payload)
    except ClientError as error:
        assert_openai_client_error(error)
        return
    assert isinstance(chat, ChatRequest) and isinstance(raw, dict)
    assert_safe_downstream(chat, raw)


def assert_safe_downstream(chat: ChatRequest, raw: dict) -> None:
    """Everything the ingress does with an accepted body either works or is a 4xx."""
    try:
        tags = parse_tags(raw.get("nemo_tags"), param="nemo_tags")
        cache_requested(raw)
    except ClientError as error:
        assert_openai_client_error(error)
        tags = ()
    for note in drop_client_overrides(raw):
        note.encode("utf-8")
    assert len(cache_key(raw, tags=tags, namespace="k")) == 64
    assert pickle.loads(pickle.dumps(raw)) == raw
    sent = strict_json(upstream_body(raw, "upstream-model", stream=chat.stream))
    assert sent["model"] == "upstream-model" and "nemo_tags" not in sent and "nemo_cache" not in sent


@FUZZ
@given(json_values)
def test_tags_from_any_json_value_parse_or_are_a_400(value):
    try:
        tags = parse_tags(value, param="nemo_tags")
    except ClientError as error:
        assert error.param == "nemo_tags"
        assert_openai_client_error(error)
        return
    assert all(isinstance(tag, str) for tag in tags) and list(tags) == sorted(set(tags))


# -- upstream replies --------------------------------------------------------------

REPLIES = {
    "openai": {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi",
                            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                            "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}},
    "anthropic": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
                  "content": [{"type": "text", "text": "hi"}, {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}],
                  "stop_reason": "tool_use", "usage": {"input_tokens": 3, "output_tokens": 5, "cache_read_input_tokens": 1}},
    "gemini": {"candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}, {"thought": True, "text": "hm"},
                                                                        {"functionCall": {"name": "f", "args": {"a": 1}}}]},
                               "finishReason": "STOP"}],
               "promptFeedback": {"blockReason": "SAFETY"},
               "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5,
                                 "thoughtsTokenCount": 1, "cachedContentTokenCount": 1},
               "modelVersion": "gemini-x", "responseId": "r1"},
}

ERRORS = {
    "openai": {"error": {"message": "busy", "type": "server_error", "code": "overloaded", "param": None}},
    "anthropic": {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    "gemini": [{"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED",
                          "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}]}}],
}

STREAMS = {
    "openai": [
        {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
        {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]},
        {"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}},
        "[DONE]",
    ],
    "anthropic": [
        {"type": "message_start", "message": {"id": "msg_1", "model": "claude", "usage": {"input_tokens": 3}}},
        {"type": "ping"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "h"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "i"}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t1", "name": "f"}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ],
    "gemini": [
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]}}], "responseId": "r1", "modelVersion": "g"},
        {"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
                         "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}},
        {"usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5}},
    ],
}


@st.composite
def mutated(draw, seed: Any) -> Any:
    """``seed`` with one to three nodes replaced by arbitrary JSON (or deleted)."""
    value = seed
    for _ in range(draw(st.integers(1, 3))):
        value = replace_somewhere(draw, value, draw(json_values))
    return value


def reply_bytes(seed: Any) -> st.SearchStrategy[bytes]:
    values = mutated(seed)
    return st.one_of(
        st.just(json.dumps(seed).encode()),
        st.builds(encode, values, st.booleans()),
        with_raw_literal(values),
        truncated(st.just(seed)),
        deeply_nested(),
        st.builds(lambda n: json.dumps(seed).encode() * n, st.integers(2, 50)),  # long and not JSON
        st.binary(max_size=300),
        st.builds(encode, json_values, st.booleans()),
    )


def assert_upstream_error(error: UpstreamError) -> None:
    reply = error.to_openai()
    assert set(reply["error"]) == {"message", "type", "param", "code"}
    json.dumps(reply, ensure_ascii=False, allow_nan=False).encode("utf-8")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_codec_is_fuzzed(provider):
    assert provider in REPLIES and provider in ERRORS and provider in STREAMS


RETRY_AFTER = st.none() | st.sampled_from(["1", "0.5", "-1", "nan", "inf", "1e999", "", " 2 ", "Wed, 21 Oct 2015 07:28:00 GMT"]) | texts


@pytest.mark.parametrize("provider", PROVIDERS)
@FUZZ
@given(data=st.data())
def test_a_reply_parses_or_is_an_upstream_error(provider, data):
    payload = data.draw(reply_bytes(REPLIES[provider]), label="payload")
    try:
        completion = codec_for(provider).parse_response(payload, endpoint="e")
    except UpstreamError as error:
        assert_upstream_error(error)
        return
    assert isinstance(completion, dict)


@pytest.mark.parametrize("provider", PROVIDERS)
@FUZZ
@given(data=st.data(), status=st.integers(100, 599) | st.integers(), retry_after=RETRY_AFTER)
def test_an_error_reply_is_always_classified(provider, data, status, retry_after):
    body = data.draw(reply_bytes(ERRORS[provider]), label="body")
    try:
        error = codec_for(provider).error_from_status(status, body, retry_after, endpoint="e")
    except UpstreamError as raised:  # allowed, though a codec should return it
        error = raised
    assert isinstance(error, UpstreamError)
    assert_upstream_error(error)


@st.composite
def sse_stream(draw, provider: str) -> list[bytes]:
    """The provider's stream, mutated, encoded as SSE, maybe with garbage
    events, cut short, and split into arbitrary pieces."""
    events = draw(mutated(STREAMS[provider]))
    events = events if isinstance(events, list) else [events]
    raw = b""
    for event in events:
        data = event.encode("utf-8", "surrogatepass") if isinstance(event, str) else encode(event, draw(st.booleans()))
        if draw(st.integers(0, 15)) == 0:
            data = draw(st.sampled_from([b"", b"{", b"[DONE]", b"null", b"[]", b'"x"', b"\xff\xfe"] + RAW_LITERALS))
        name = event.get("type") if isinstance(event, dict) and provider == "anthropic" else None
        head = f"event: {name}\n".encode("utf-8", "surrogatepass") if isinstance(name, str) else b""
        raw += head + b"data: " + data.replace(b"\n", b" ") + b"\n\n"
    if draw(st.integers(0, 4)) == 0:
        raw = raw[: draw(st.integers(0, len(raw)))]
    cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=6)))
    return [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])]


@pytest.mark.parametrize("provider", PROVIDERS)
@FUZZ
@given(data=st.data())
def test_a_stream_translates_or_is_an_upstream_error(provider, data):
    pieces = data.draw(sse_stream(provider), label="pieces")
    translator = codec_for(provider).stream_translator("m", endpoint="e")
    decoder = SSEDecoder()
    chunks = []
    try:
        for piece in pieces:
            for event in decoder.feed(piece):
                chunks += translator.feed(event)
        chunks += translator.finish()
    except UpstreamError as error:
        assert_upstream_error(error)
        return
    assert all(isinstance(chunk, dict) for chunk in chunks)


# -- minimal replies the properties above found crashing the codecs (issue 14) ----
# Each raised something other than an UpstreamError when found (router/providers/ to fix):
# json.loads errors other than JSONDecodeError (RecursionError from deep
# nesting, ValueError from a 4300+ digit integer), and replies of the right
# shape but wrong types (.get on a non-dict, arithmetic on a string count, a
# list as a dict key).

DEEP = b"[" * 1100 + b"]" * 1100
HUGE_INT = b"9" * 5000
MESSAGE_START = b'{"type":"message_start","message":{"id":"m","model":"c"}}'


def sse(*datas: bytes) -> bytes:
    return b"".join(b"data: " + data + b"\n\n" for data in datas)


KNOWN_CRASHES = [
    pytest.param("openai", "reply", DEEP, id="openai-reply-deep"),
    pytest.param("openai", "reply", HUGE_INT, id="openai-reply-huge-int"),
    pytest.param("openai", "error", DEEP, id="openai-error-deep"),
    pytest.param("openai", "error", HUGE_INT, id="openai-error-huge-int"),
    pytest.param("openai", "stream", sse(b'{"choices":[1]}'), id="openai-stream-choice-not-object"),
    pytest.param("openai", "stream", sse(b'{"choices":5}'), id="openai-stream-choices-not-list"),
    pytest.param("anthropic", "reply", DEEP, id="anthropic-reply-deep"),
    pytest.param("anthropic", "error", HUGE_INT, id="anthropic-error-huge-int"),
    pytest.param("anthropic", "reply", b'{"type":"message","content":[],"usage":[1]}', id="anthropic-reply-usage-not-object"),
    pytest.param("anthropic", "reply", b'{"type":"message","content":[],"usage":{"input_tokens":"3"}}', id="anthropic-reply-input-tokens-string"),
    pytest.param("anthropic", "reply", b'{"type":"message","content":[],"usage":{"output_tokens":"3"}}', id="anthropic-reply-output-tokens-string"),
    pytest.param("anthropic", "reply", b'{"type":"message","content":[{"type":"text","text":5}]}', id="anthropic-reply-text-not-string"),
    pytest.param("anthropic", "reply", b'{"type":"message","content":[],"stop_reason":[1]}', id="anthropic-reply-stop-reason-list"),
    pytest.param("anthropic", "stream", sse(MESSAGE_START, b'{"type":[1]}'), id="anthropic-stream-type-list"),
    pytest.param("anthropic", "stream", sse(b'{"type":"message_start","message":[1]}'), id="anthropic-stream-message-not-object"),
    pytest.param("anthropic", "stream", sse(MESSAGE_START, b'{"type":"content_block_start","content_block":"x"}'), id="anthropic-stream-block-not-object"),
    pytest.param("anthropic", "stream", sse(MESSAGE_START, b'{"type":"content_block_start","index":[],"content_block":{"type":"tool_use"}}'), id="anthropic-stream-block-index-list"),
    pytest.param("anthropic", "stream", sse(MESSAGE_START, b'{"type":"content_block_delta","delta":"x"}'), id="anthropic-stream-delta-not-object"),
    pytest.param("anthropic", "stream", sse(MESSAGE_START, b'{"type":"content_block_delta","index":[],"delta":{"type":"input_json_delta","partial_json":"{"}}'), id="anthropic-stream-delta-index-list"),
    pytest.param("anthropic", "stream", sse(MESSAGE_START, b'{"type":"message_delta","delta":{"stop_reason":[]}}'), id="anthropic-stream-stop-reason-list"),
    pytest.param("anthropic", "stream", sse(b'{"type":"message_start","message":{"usage":{"input_tokens":"3"}}}', b'{"type":"message_stop"}'), id="anthropic-stream-tokens-string"),
    pytest.param("gemini", "reply", DEEP, id="gemini-reply-deep"),
    pytest.param("gemini", "error", DEEP, id="gemini-error-deep"),
    pytest.param("gemini", "error", HUGE_INT, id="gemini-error-huge-int"),
    pytest.param("gemini", "reply", b'{"candidates":{"a":1}}', id="gemini-reply-candidates-object"),
    pytest.param("gemini", "reply", b'{"candidates":5}', id="gemini-reply-candidates-number"),
    pytest.param("gemini", "reply", b'{"candidates":[5]}', id="gemini-reply-candidate-not-object"),
    pytest.param("gemini", "reply", b'{"candidates":[{"content":{"parts":5}}]}', id="gemini-reply-parts-not-list"),
    pytest.param("gemini", "reply", b'{"candidates":[{"finishReason":[1]}]}', id="gemini-reply-finish-reason-list"),
    pytest.param("gemini", "reply", b'{"usageMetadata":[1]}', id="gemini-reply-usage-not-object"),
    pytest.param("gemini", "reply", b'{"usageMetadata":{"candidatesTokenCount":"2"}}', id="gemini-reply-candidates-tokens-string"),
    pytest.param("gemini", "reply", b'{"usageMetadata":{"promptTokenCount":"2"}}', id="gemini-reply-prompt-tokens-string"),
    pytest.param("gemini", "reply", b'{"promptFeedback":5}', id="gemini-reply-prompt-feedback-number"),
    pytest.param("gemini", "stream", sse(b'{"candidates":[{"content":[1]}]}'), id="gemini-stream-content-not-object"),
    pytest.param("gemini", "stream", sse(b'{"candidates":[{"finishReason":[1]}]}'), id="gemini-stream-finish-reason-list"),
    pytest.param("gemini", "stream", sse(b'{"candidates":[{"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":"3"}}'), id="gemini-stream-tokens-string"),
]


@pytest.mark.parametrize(("provider", "entry", "payload"), KNOWN_CRASHES)
def test_minimal_replies_that_crash_a_codec_are_upstream_errors_or_parse(provider, entry, payload):
    codec = codec_for(provider)
    try:
        if entry == "reply":
            codec.parse_response(payload, endpoint="e")
        elif entry == "error":
            assert isinstance(codec.error_from_status(502, payload, None, endpoint="e"), UpstreamError)
        else:
            translator = codec.stream_translator("m", endpoint="e")
            for event in SSEDecoder().feed(payload):
                translator.feed(event)
            translator.finish()
    except UpstreamError as error:
        assert_upstream_error(error)


# -- the passthrough stream's own reader (OpenAI upstreams skip the codec) ----

@pytest.mark.parametrize(
    "data",
    ['{"choices": 5}', '{"choices": [1]}', '{"choices": "ab"}', '{"choices": [{"delta": "x"}]}',
     '{"choices": [{"delta": {"content": 5}}]}', '{"choices": [{"delta": {"tool_calls": 1}}], "usage": [1]}'],
)
def test_the_passthrough_watch_turns_wrong_types_into_protocol_errors(data):
    from router.errors import UpstreamProtocolError
    from router.sse import SSEEvent
    from router.stream_watch import StreamWatch

    watch = StreamWatch("e", forward_usage=True)
    try:
        watch.accept(SSEEvent(data=data.encode(), raw=f"data: {data}\n\n".encode()))
    except UpstreamProtocolError:
        pass


def test_usage_with_string_counts_is_treated_as_missing():
    from router.stream_watch import Usage

    assert Usage.from_dict({"prompt_tokens": "3", "completion_tokens": 2**60, "total_tokens": 5}) == Usage(None, None, 5)
