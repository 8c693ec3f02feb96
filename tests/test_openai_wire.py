"""Request validation, upstream bodies, error classification: pure, no Ray."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.errors import AllAttemptsFailed, InvalidRequest, UpstreamConnectError, UpstreamStatusError, UpstreamTimeout
from router.openai_wire import parse_chat_request, upstream_body
from router.providers import codec_for


def body(**fields):
    base = {"model": "voice-fast", "messages": [{"role": "user", "content": "hi"}]}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


def test_valid_request_keeps_every_openai_field():
    chat, raw = parse_chat_request(body(stream=True, stream_options={"include_usage": True}, tools=[{"type": "function"}], seed=7))
    assert chat.stream and chat.include_usage
    assert raw["seed"] == 7 and raw["tools"] == [{"type": "function"}]


@pytest.mark.parametrize(
    ("payload", "code", "param"),
    [
        (b"{not json", "invalid_json", None),
        (b"[1, 2]", "invalid_json", None),
        (body(model=...), "missing_required_parameter", "model"),
        (body(messages=...), "missing_required_parameter", "messages"),
        (body(messages=[]), "invalid_value", "messages"),
        (body(messages=[{"role": "robot", "content": "x"}]), "invalid_value", "messages[0].role"),
        (body(stream="yes"), "invalid_value", "stream"),
        (body(temperature=7), "invalid_value", "temperature"),
        (body(max_tokens="lots"), "invalid_value", "max_tokens"),
        (body(temperature="hot"), "invalid_value", "temperature"),  # not pydantic's temperature.float
        (body(n=0), "invalid_value", "n"),
        (body(stream_options={"include_usage": "yes"}), "invalid_value", "stream_options.include_usage"),
        (body(messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                        {"role": "user", "content": 5}]), "invalid_value", "messages[2].content"),
        (body(messages=[{"role": "user", "content": {"text": "a"}}]), "invalid_value", "messages[0].content"),
        (body(messages=[{"role": "user", "content": "a"}, {"content": "b"}]), "missing_required_parameter", "messages[1].role"),
        (body(tools=[1]), "invalid_value", "tools[0]"),
    ],
)
def test_bad_requests_raise_invalid_request_naming_the_param(payload, code, param):
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(payload)
    error = info.value.to_openai()["error"]
    assert info.value.http_status == 400
    assert error["code"] == code and error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_upstream_body_swaps_model_forces_usage_and_drops_router_fields():
    _, raw = parse_chat_request(body(stream=True, nemo_tags=["eu"]))
    sent = json.loads(upstream_body(raw, "gpt-x", stream=True))
    assert sent["model"] == "gpt-x"
    assert sent["stream_options"] == {"include_usage": True}
    assert "nemo_tags" not in sent
    assert "stream_options" not in json.loads(upstream_body(raw, "gpt-x", stream=False))


def status_error(status, body, retry_after, endpoint):
    return codec_for("openai").error_from_status(status, body, retry_after, endpoint=endpoint)


def test_status_classification():
    overloaded = status_error(503, b'{"error": {"message": "busy"}}', "2", "e1")
    assert overloaded.retryable and overloaded.counts_against_health
    assert overloaded.retry_after_s == 2.0
    # The upstream's text is kept (redacted) for the record, never put in the client's message.
    assert "busy" not in overloaded.message and "busy" in overloaded.detail
    limited = status_error(429, b"", None, "e1")
    assert limited.retryable and limited.counts_against_health
    rejected = status_error(400, b"not json", None, "e1")
    assert not rejected.retryable and not rejected.counts_against_health
    assert rejected.http_status == 400


def test_exhausted_chain_error_carries_every_attempt_and_picks_a_status():
    errors = [UpstreamConnectError("x", endpoint="a"), UpstreamStatusError("y", status_code=503, endpoint="b")]
    failure = AllAttemptsFailed(errors)
    assert failure.http_status == 502 and failure.errors == errors
    assert "a: UpstreamConnectError" in failure.message
    assert AllAttemptsFailed([UpstreamTimeout("t", endpoint="a")]).http_status == 504
    passthrough = AllAttemptsFailed([UpstreamStatusError("bad", status_code=400, endpoint="a")])
    assert passthrough.http_status == 400


_BAD_CONTENT = st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                         st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


@settings(max_examples=80, deadline=None)
@given(before=st.integers(0, 6), after=st.integers(0, 3), content=_BAD_CONTENT)
def test_a_bad_content_anywhere_names_its_own_message(before, after, content):
    """The param is the request's own path, whatever pydantic's location says
    (``messages.2.content.str``, ``...list[any]``): never a pydantic step."""
    good = [{"role": "user", "content": "x"}]
    messages = good * before + [{"role": "user", "content": content}] + good * after
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(body(messages=messages))
    assert info.value.param == f"messages[{before}].content"
    assert "str" not in info.value.param and "list[" not in info.value.message


@pytest.mark.parametrize("content", [None, "text", [], [{"type": "text", "text": "a"}]])
def test_content_may_be_a_string_a_list_of_parts_or_null(content):
    chat, raw = parse_chat_request(body(messages=[{"role": "assistant", "content": content, "tool_calls": []},
                                                  {"role": "user", "content": "hi"}]))
    assert raw["messages"][0]["content"] == content
