"""Hostile and broken input over real HTTP (issue 14): every bad request gets
OpenAI's error object with the right 4xx, never a 500 or a traceback; a body
that never arrives is cut off; client fields that look like credentials or
routing overrides never reach an upstream."""

from __future__ import annotations

import json
import socket
import time
import uuid
from urllib.parse import urlsplit

import httpx
import pytest
from helpers import AUTH, wait_for_records

pytestmark = pytest.mark.ray

USER = [{"role": "user", "content": "hello"}]


def assert_openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text
    return error


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        # JSON nested far deeper than any chat request (500 and 1200 levels).
        ('{"model": "voice-fast", "messages": [{"role": "user", "content": "hi"}], "metadata": %s}' % nested(500), "metadata"),
        ('{"model": "voice-fast", "messages": [{"role": "user", "content": "hi"}], "metadata": %s}' % nested(1200), None),
        # nemo_tags must be a list or a string.
        ('{"model": "voice-fast", "messages": [{"role": "user", "content": "hi"}], "nemo_tags": 5}', "nemo_tags"),
        ('{"model": "voice-fast", "messages": [{"role": "user", "content": "hi"}], "nemo_tags": true}', "nemo_tags"),
        # A lone surrogate, escaped.
        ('{"model": "voice-fast", "messages": [{"role": "user", "content": "\\ud800"}]}', "messages[0].content"),
        # An integer literal past Python's 4300-digit limit.
        ('{"model": "voice-fast", "messages": [{"role": "user", "content": "hi"}], "seed": %s}' % ("9" * 5000), None),
    ],
)
def test_bad_bodies_are_400s(client, raw, param):
    error = assert_openai_error(client.post("/v1/chat/completions", content=raw.encode(),
                                            headers={"content-type": "application/json"}), 400)
    if param is not None:
        assert error["param"] == param


def test_raw_invalid_utf8_is_a_400(client):
    body = b'{"model": "voice-fast", "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}'
    assert_openai_error(client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"}), 400)


def test_a_body_that_is_not_json_is_a_415(client):
    response = client.post("/v1/chat/completions", content=b"model=voice-fast", headers={"content-type": "text/plain"})
    assert assert_openai_error(response, 415)["code"] == "unsupported_media_type"


def test_the_model_list_needs_a_key(router):
    assert_openai_error(httpx.get(f"{router}/v1/models", timeout=10), 401)
    assert httpx.get(f"{router}/v1/models", headers=AUTH, timeout=10).status_code == 200


def test_a_body_announced_but_never_sent_is_cut_off_with_a_408(router):
    parts = urlsplit(router)
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"authorization: {AUTH['authorization']}\r\ncontent-length: 50000\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection((parts.hostname, parts.port), timeout=15) as sock:
        sock.sendall(head + b'{"model": "voice-fast", "messages": [{"role": "user", "content": "h')
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    elapsed_s = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert elapsed_s < 2.0 + 3.0  # the configured body deadline (tests: 2 s), plus slack


def test_a_bad_request_id_is_replaced(client, turn_log_path):
    bad = "x" * 129
    response = client.post("/v1/chat/completions", json={"model": "voice-fast", "messages": USER},
                           headers={"x-request-id": bad})
    assert response.status_code == 200
    assert wait_for_records(turn_log_path, {bad}, timeout_s=2) == {}


def test_credential_and_routing_fields_are_dropped_with_a_note(client, turn_log_path):
    request_id = f"drop-{uuid.uuid4().hex[:8]}"
    body = {"model": "voice-fast", "messages": USER, "api_key": "sk-client-canary-123", "base_url": "http://evil.example/v1",
            "extra_headers": {"x": "y"}}
    response = client.post("/v1/chat/completions", json=body, headers={"x-request-id": request_id})
    assert response.status_code == 200
    record = wait_for_records(turn_log_path, {request_id})[request_id]
    notes = " ".join(record["request_notes"])
    assert "api_key" in notes and "base_url" in notes and "extra_headers" in notes
    assert "sk-client-canary-123" not in json.dumps(record, default=str)


def _raw_exchange(router: str, payload: bytes) -> bytes:
    """Send raw bytes to the router's port; what comes back within 10 s."""
    address = urlsplit(router)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(payload)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return received


BODY = json.dumps({"model": "voice-fast", "messages": USER}).encode()


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\x16\x03\x01\x02\x00garbage that is not HTTP\r\n\r\n", id="garbage"),
        pytest.param(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n" + BODY, id="bad-content-length"),
        pytest.param(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 9\r\n\r\n" + BODY,
                     id="two-content-lengths"),
        pytest.param(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 200_000 + b"\r\n\r\n" + BODY,
                     id="oversized-header"),
        pytest.param(b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nhost: x\r\n\r\n", id="oversized-request-line"),
    ],
)
def test_malformed_http_gets_a_4xx_from_the_front_proxy_and_the_router_keeps_serving(router, client, payload):
    """Malformed HTTP never reaches the router's code: Serve's HAProxy
    answers it itself, with its own 4xx page (not OpenAI's error object:
    Serve does not let the router shape it; README "Hostile input"), and
    closes the connection. Never a 5xx, never a hang, never a traceback."""
    answer = _raw_exchange(router, payload)
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.") and status_line.split()[1][:1] == b"4", answer[:200]
    assert b"Traceback" not in answer
    response = client.post("/v1/chat/completions", json={"model": "voice-fast", "messages": USER})
    assert response.status_code == 200
