"""Issue 14: hostile client input is a 400 in OpenAI's error format, never a
500, on the pure parsing path (``parse_chat_request``, ``parse_tags``) and
the ingress's small header helpers. Pure, no Ray."""

import json
import pickle
import sys
import timeit

import pytest

from router.errors import InvalidRequest
from router.openai_wire import (
    drop_client_overrides,
    is_json_content_type,
    parse_chat_request,
    request_id_from_header,
)
from router.request_guard import MAX_JSON_DEPTH, check_json_tree
from router.response_cache.key import cache_key
from router.tags import parse_tags

BASE = {"model": "voice-fast", "messages": [{"role": "user", "content": "hi"}]}


def body(**fields) -> bytes:
    return json.dumps({**BASE, **fields}).encode()


def spliced(field: str, literal: bytes) -> bytes:
    """A valid body with ``field`` set to raw JSON text (what json.dumps cannot write)."""
    return b'{"model":"voice-fast","messages":[{"role":"user","content":"hi"}],"' + field.encode() + b'":' + literal + b"}"


def rejected(payload: bytes) -> dict:
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(payload)
    assert info.value.http_status == 400
    error = info.value.to_openai()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    return error


def nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


# -- 1. nesting depth ---------------------------------------------------------


@pytest.mark.parametrize(
    ("levels", "param"),
    # Past ~1000 levels the parser itself gives up (RecursionError): still a
    # 400, but there is no tree to name the field from.
    [(MAX_JSON_DEPTH, "metadata"), (500, "metadata"), (1200, None), (100_000, None)],
)
def test_deeply_nested_json_is_a_400(levels, param):
    error = rejected(spliced("metadata", nested(levels)))
    assert error["param"] == param and error["code"] == "invalid_json"
    assert "nested" in error["message"] and str(MAX_JSON_DEPTH) in error["message"]


def test_deep_nesting_inside_a_message_names_the_top_level_field():
    deep = b'{"model":"m","messages":[{"role":"user","content":' + nested(600) + b"}]}"
    assert rejected(deep)["param"] == "messages"


def test_a_deep_top_level_array_is_a_400():
    assert rejected(nested(2000))["code"] == "invalid_json"


def test_nesting_just_under_the_limit_is_accepted_cached_and_pickled():
    # The body object is level 1, so a field may nest MAX_JSON_DEPTH - 1 more.
    _, raw = parse_chat_request(spliced("metadata", nested(MAX_JSON_DEPTH - 1)))
    assert len(cache_key(raw)) == 64
    assert pickle.loads(pickle.dumps(raw)) == raw


def test_realistic_tool_schemas_fit_well_inside_the_limit():
    schema = {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "object", "properties": {"b": {"type": "string"}}}}}}
    tools = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
    chat, _ = parse_chat_request(body(tools=tools))
    assert chat.tools == tools


def test_the_depth_walk_is_iterative_and_cheap():
    # A deep tree built in Python (no json.loads) must not hit the recursion limit.
    tree: list = []
    for _ in range(sys.getrecursionlimit() * 3):
        tree = [tree]
    with pytest.raises(InvalidRequest):
        check_json_tree({"x": tree})
    typical = json.loads(typical_chat_body())
    per_call_s = min(timeit.repeat(lambda: check_json_tree(typical), number=200, repeat=5)) / 200
    assert per_call_s < 50e-6, f"depth walk took {per_call_s * 1e6:.1f} us on a 2 KB body"


def typical_chat_body() -> bytes:
    """About 2 KB: a system prompt, a few turns, one tool, the usual knobs."""
    messages = [{"role": "system", "content": "You are a helpful voice assistant. Answer briefly. " * 8}]
    for i in range(4):
        messages.append({"role": "user", "content": f"question {i}: what is the weather like in Paris today, and tomorrow?"})
        messages.append({"role": "assistant", "content": "It is sunny and mild, about twenty degrees. " * 3})
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    payload = {**BASE, "messages": messages, "tools": [tool], "temperature": 0.7, "max_tokens": 256, "stream": True,
               "stream_options": {"include_usage": True}, "nemo_tags": ["eu"]}
    return json.dumps(payload).encode()


def test_the_typical_body_is_about_2_kb_and_valid():
    payload = typical_chat_body()
    assert 1800 <= len(payload) <= 2600
    parse_chat_request(payload)


# -- 2. nemo_tags of the wrong type -------------------------------------------


@pytest.mark.parametrize("value", [5, True, 1.5, {"eu": True}])
def test_tags_that_are_not_a_list_or_string_are_a_400_naming_the_param(value):
    with pytest.raises(InvalidRequest) as info:
        parse_tags(value, param="nemo_tags")
    assert info.value.param == "nemo_tags" and info.value.http_status == 400
    assert type(value).__name__ in info.value.message


def test_tags_still_come_from_lists_tuples_and_strings():
    assert parse_tags(("EU",)) == ("eu",) and parse_tags(["a", "b"]) == ("a", "b") and parse_tags("b,a") == ("a", "b")


# -- 3. lone surrogates ---------------------------------------------------------


def test_an_escaped_lone_surrogate_is_a_400_naming_the_field():
    error = rejected(b'{"model":"m","messages":[{"role":"user","content":"a\\ud800b"}]}')
    assert error["param"] == "messages[0].content" and "surrogate" in error["message"]


def test_a_lone_surrogate_in_a_key_names_the_key():
    error = rejected(b'{"model":"m","messages":[{"role":"user","content":"hi"}],"metadata":{"\\udc00":1}}')
    assert error["param"] is not None and error["param"].startswith("metadata")


def test_raw_utf8_encoded_surrogate_bytes_are_a_400():
    error = rejected(b'{"model":"m","messages":[{"role":"user","content":"\xed\xa0\x80"}]}')
    assert "UTF-8" in error["message"] and error["code"] == "invalid_json"


def test_invalid_utf8_is_a_400():
    assert rejected(b'{"model":"m\xff","messages":[]}')["code"] == "invalid_json"


def test_a_valid_escaped_surrogate_pair_and_non_ascii_text_pass():
    chat, raw = parse_chat_request(b'{"model":"m","messages":[{"role":"user","content":"\\ud83d\\ude00 caf\xc3\xa9"}]}')
    assert raw["messages"][0]["content"] == "\U0001f600 café"
    assert len(cache_key(raw)) == 64


# -- 4. huge integer literals and non-finite numbers ---------------------------


def test_an_integer_over_the_digit_limit_is_a_400():
    error = rejected(spliced("seed", b"9" * 5000))
    assert error["code"] == "invalid_json" and "digits" in error["message"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400"])
def test_non_finite_numbers_are_a_400(literal):
    error = rejected(spliced("seed", literal))
    assert error["code"] == "invalid_json" and "finite" in error["message"]


def test_large_but_finite_numbers_pass():
    _, raw = parse_chat_request(spliced("seed", b"9" * 300 + b".5e3"))
    assert raw["seed"] > 1e300


# -- error params are the request's own paths ----------------------------------


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": {"float": 1}}, "temperature"),
        ({"messages": [{"role": "user"}, {"role": "user"}, {"role": "robot"}]}, "messages[2].role"),
        ({"messages": [{"role": "user"}, 5]}, "messages[1]"),
        ({"tools": [{"type": "function"}, [1]]}, "tools[1]"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"model": None}, "model"),
    ],
)
def test_error_param_is_the_requests_field_path_not_pydantics(fields, param):
    assert rejected(body(**fields))["param"] == param


def test_a_missing_field_is_named():
    error = rejected(json.dumps({"messages": BASE["messages"]}).encode())
    assert error["param"] == "model" and error["code"] == "missing_required_parameter"


# -- 5. client credentials and routing overrides -------------------------------


def test_client_credentials_and_overrides_are_dropped_and_noted_without_values():
    raw = {**BASE, "api_key": "sk-secret-1", "api_base": "http://evil", "base_url": "http://evil/v1",
           "extra_headers": {"x": "sk-secret-2"}, "proxy": "http://p", "openai_api_key": "sk-secret-3",
           "Azure_API_KEY": "sk-secret-4", "temperature": 0.5}
    notes = drop_client_overrides(raw)
    assert raw == {**BASE, "temperature": 0.5}
    assert len(notes) == 7
    assert "dropped client field 'api_key' (the router never uses client credentials or routing overrides)" in notes
    assert not any("sk-secret" in note or "evil" in note for note in notes)


def test_nothing_to_drop_means_no_notes_and_an_untouched_body():
    raw = {**BASE, "user": "u1", "metadata": {"api_key": "nested values are the client's own business"}}
    before = json.loads(json.dumps(raw))
    assert drop_client_overrides(raw) == [] and raw == before


def test_dropped_fields_never_reach_the_upstream_body():
    from router.openai_wire import upstream_body

    _, raw = parse_chat_request(body(api_key="sk-secret", base_url="http://evil/v1"))
    drop_client_overrides(raw)
    assert b"sk-secret" not in upstream_body(raw, "gpt-x", stream=False)


# -- 6. request ids from a header ------------------------------------------------


@pytest.mark.parametrize("value", ["abc-123", "x" * 128, "!~", "req_01HZX:9/aB=+"])
def test_visible_ascii_request_ids_up_to_128_chars_are_kept(value):
    assert request_id_from_header(value) == value


@pytest.mark.parametrize("value", [None, "", "x" * 129, "has space", "tab\there", "new\nline", "caf\u00e9", "nul\x00", "del\x7f"])
def test_other_request_ids_are_refused(value):
    assert request_id_from_header(value) is None


# -- 7. content types ------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [None, "", "application/json", "Application/JSON", "application/json; charset=utf-8", " application/json ;charset=UTF-8",
     "application/vnd.api+json", "application/merge-patch+json; q=1"],
)
def test_json_content_types_are_accepted(value):
    assert is_json_content_type(value)


@pytest.mark.parametrize(
    "value",
    ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x", "application/jsonx",
     "application/json-seq", "json", "+json", "application/xml"],
)
def test_other_content_types_are_refused(value):
    assert not is_json_content_type(value)
