"""Anthropic Messages wire format (`POST /v1/messages`, version 2023-06-01).

Parses a Messages request into a `CompletionRequest` as strictly as the
real API on the points a translating client could get wrong (the
`anthropic-version` header, `model`, `max_tokens` and `messages` are
required), and builds the replies: a `message` object, the SSE event
sequence (`message_start`, `ping`, `content_block_start`,
`content_block_delta` with `text_delta` / `input_json_delta`,
`content_block_stop`, `message_delta` with `stop_reason` and the output
token count, `message_stop`) and `{"type": "error", ...}` error objects.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any

from .request import (
    TOOL_ARGUMENTS,
    TOOL_CALL_TEXT,
    CompletionRequest,
    InvalidRequest,
    Reply,
    continuation_start,
    word_count,
)
from .wire import split_arguments

__all__ = ["AnthropicStream", "failure_body", "invalid_body", "message_body", "parse_messages_request"]

STOP_REASONS = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}

_FAILURES: dict[int, tuple[str, str]] = {
    500: ("api_error", "Internal server error"),
    503: ("overloaded_error", "Overloaded"),
    529: ("overloaded_error", "Overloaded"),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    400: ("invalid_request_error", "prompt is too long: 9000 tokens > 8192 maximum"),
    401: ("authentication_error", "invalid x-api-key sk-sim-REVOKED****ab12 (see https://internal.sim.example/keys)"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
}


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def failure_body(status: int, retry_after_s: float | None = None) -> dict[str, Any]:
    return _error(*_FAILURES[status])


def invalid_body(message: str) -> dict[str, Any]:
    return _error("invalid_request_error", message)


def parse_messages_request(body: bytes, headers: Mapping[str, str]) -> CompletionRequest:
    """Raises `InvalidRequest` where the real API would answer 400."""
    if not headers.get("anthropic-version"):
        raise InvalidRequest("anthropic-version: header is required")
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise InvalidRequest("request body must be a JSON object")
    messages, model, max_tokens = payload.get("messages"), payload.get("model"), payload.get("max_tokens")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise InvalidRequest("messages: a non-empty list of messages is required")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: Field required")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise InvalidRequest("max_tokens: Field required (a positive integer)")
    last = messages[-1]
    last_text = _text(last.get("content"))
    prompt = word_count(_text(payload.get("system"))) + sum(word_count(_text(m.get("content"))) for m in messages)
    return CompletionRequest(
        model=model,
        stream=payload.get("stream") is True,
        include_usage=True,
        max_tokens=max_tokens,
        prompt_tokens=max(1, prompt),
        first_word=continuation_start(last_text) if last.get("role") == "assistant" else 1,
        tool_name=_first_tool(payload.get("tools")),
        asks_for_tool=last.get("role") == "user" and TOOL_CALL_TEXT in last_text,
        after_tool_result=last.get("role") == "user" and _has_tool_result(last.get("content")),
    )


def _text(content: Any) -> str:
    """The text of a string, or of the text and tool_result blocks of a list."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block, dict) and block.get("type") == "tool_result":
            texts.append(_text(block.get("content")))
    return " ".join(texts)


def _has_tool_result(content: Any) -> bool:
    return isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)


def _first_tool(tools: Any) -> str | None:
    if not isinstance(tools, list) or not tools or not isinstance(tools[0], dict):
        return None
    name = tools[0].get("name")
    return name if isinstance(name, str) and name else None


def _new_message_id() -> str:
    return f"msg_sim_{secrets.token_hex(12)}"


def _tool_use_id() -> str:
    return f"toolu_sim_{secrets.token_hex(8)}"


def message_body(request: CompletionRequest, reply: Reply) -> dict[str, Any]:
    """A whole non-streamed `message` carrying `reply`."""
    if reply.tool_name:
        content = [{"type": "tool_use", "id": _tool_use_id(), "name": reply.tool_name, "input": TOOL_ARGUMENTS}]
    else:
        content = [{"type": "text", "text": reply.text}] if reply.n_words else []
    return {
        "id": _new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": request.model,
        "content": content,
        "stop_reason": "tool_use" if reply.tool_name else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": request.prompt_tokens, "output_tokens": reply.completion_tokens},
    }


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: ".encode() + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


class AnthropicStream:
    """The events of one Messages stream. Content blocks open lazily: a text
    block at the first word, a tool_use block for the tool call."""

    malformed = b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "delta": {\n\n'

    def __init__(self, request: CompletionRequest) -> None:
        self._request = request
        self._index = -1
        self._open: str | None = None  # type of the open content block
        self._text_prefix = b""

    def start(self) -> list[bytes]:
        message = {
            "id": _new_message_id(), "type": "message", "role": "assistant", "model": self._request.model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": self._request.prompt_tokens, "output_tokens": 1},
        }
        return [_event("message_start", {"type": "message_start", "message": message}), _event("ping", {"type": "ping"})]

    def _open_block(self, block: dict[str, Any]) -> bytes:
        closing = self._close_block()
        self._index += 1
        self._open = block["type"]
        return closing + _event("content_block_start", {"type": "content_block_start", "index": self._index, "content_block": block})

    def _close_block(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return _event("content_block_stop", {"type": "content_block_stop", "index": self._index})

    def text(self, delta: str) -> bytes:
        opening = b""
        if self._open != "text":
            opening = self._open_block({"type": "text", "text": ""})
            self._text_prefix = (
                b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
                b'"delta":{"type":"text_delta","text":' % self._index
            )
        return opening + self._text_prefix + json.dumps(delta).encode() + b"}}\n\n"

    def tool_call(self, name: str) -> list[bytes]:
        events = [self._open_block({"type": "tool_use", "id": _tool_use_id(), "name": name, "input": {}})]
        for fragment in ["", *split_arguments(TOOL_ARGUMENTS)]:
            delta = {"type": "input_json_delta", "partial_json": fragment}
            events.append(_event("content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta}))
        return events

    def finish(self, reason: str, completion_tokens: int) -> list[bytes]:
        delta = {"stop_reason": STOP_REASONS.get(reason, "end_turn"), "stop_sequence": None}
        return [
            self._close_block(),
            _event("message_delta", {"type": "message_delta", "delta": delta, "usage": {"output_tokens": completion_tokens}}),
            _event("message_stop", {"type": "message_stop"}),
        ]
