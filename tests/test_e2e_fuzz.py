"""Fuzzing the running router over real HTTP (issue 14): whatever body,
content type, request id or key a client sends, the answer is never a 5xx,
and every error is OpenAI's error object with no traceback in it."""

from __future__ import annotations

import json

import httpx
import pytest
from helpers import AUTH
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.ray

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
OPENAI_KEYS = ["model", "messages", "stream", "temperature", "max_tokens", "tools", "tool_choice", "n", "stop",
               "stream_options", "nemo_tags", "nemo_cache", "seed", "user", "metadata", "api_key", "response_format"]
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", "x"]),
                                           "content": st.one_of(st.text(max_size=30), json_values)}), max_size=3)
bodies = st.one_of(
    st.fixed_dictionaries(
        {"model": st.sampled_from(["voice-fast", "nope", "", "drops"]), "messages": messages},
        optional={key: json_values for key in OPENAI_KEYS if key not in ("model", "messages")} | {"stream": st.booleans()},
    ),
    st.dictionaries(st.sampled_from(OPENAI_KEYS), json_values, max_size=6),
    json_values,
)


def encoded(value) -> bytes:
    return json.dumps(value).encode()


raw_bodies = st.one_of(
    bodies.map(encoded),
    st.binary(max_size=200),
    bodies.map(encoded).flatmap(lambda b: st.integers(0, max(0, len(b) - 1)).map(lambda cut: b[:cut])),  # truncated
    st.integers(1, 3000).map(lambda depth: b'{"model": "voice-fast", "messages": ' + b"[" * depth + b"]" * depth + b"}"),
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "content-type": st.sampled_from(["application/json", "text/plain", "application/json; charset=latin-1",
                                         "multipart/form-data", "application/x-www-form-urlencoded", ""]),
        # Printable ASCII, without the edge whitespace HTTP clients refuse to send.
        "x-request-id": st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300).map(str.strip),
        "x-nemo-tags": st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=50).map(str.strip),
        "authorization": st.sampled_from([AUTH["authorization"], "Bearer", "Bearer sk-wrong", "Basic abc", ""]),
    },
)


def assert_well_formed(response: httpx.Response) -> None:
    assert "Traceback" not in response.text
    assert response.status_code != 500, response.text[:500]
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        # A 5xx is only ever an upstream's failure, never the router's own.
        assert response.status_code < 500 or error["type"] == "upstream_error", (response.status_code, error)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=raw_bodies, extra=headers)
def test_no_request_gets_a_5xx(router, body, extra):
    with httpx.Client(base_url=router, timeout=30) as client:
        response = client.post("/v1/chat/completions", content=body, headers={**AUTH, "content-type": "application/json", **extra})
        if response.status_code == 200 and response.headers.get("content-type", "").startswith("text/event-stream"):
            assert "data: [DONE]" in response.text
            return
        assert_well_formed(response)
