"""Reading Anthropic's replies: messages, SSE streams and error objects.

Stream translation, Anthropic event -> OpenAI chunks:

    message_start                       role chunk (id and model from the message)
    content_block_start  text           content chunk if it carries text
    content_block_start  tool_use       tool-call chunk: index, id, type, name
    content_block_delta  text_delta     content chunk
    content_block_delta  input_json_delta  tool-call chunk: argument fragment
    message_delta        stop_reason    finish chunk (output token count kept)
    message_stop                        usage-only chunk; the stream is done
    ping, content_block_stop, thinking  nothing
    error                               raises the classified error

OpenAI numbers tool calls among tool calls, Anthropic among all content
blocks; the translator maps one to the other.

A field the reply's meaning depends on (content, text, ids, stop_reason,
an event's type, a block index) must have its type or the reply is an
``UpstreamProtocolError``; a usage that is not an object, or a token count
that is not a believable integer, reads as absent (0).

Errors are classified by Anthropic's ``error.type`` (each documents its
HTTP status); a mid-stream ``error`` event becomes the same
``UpstreamStatusError`` its type would have been as a status
(``overloaded_error`` -> 529, retryable).
"""

from __future__ import annotations

import json
from typing import Any

from router.errors import UpstreamDisconnected, UpstreamProtocolError, UpstreamStatusError
from router.providers.base import as_dict, as_str, dict_or_empty, json_or_none, load_json_object, status_error, token_count
from router.providers.chunks import ChunkBuilder, completion_choice, usage_dict
from router.sse import SSEEvent

__all__ = ["AnthropicStreamTranslator", "classify_error", "parse_message"]

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# error.type -> (the HTTP status Anthropic documents for it, the provider's fault?)
ERROR_TYPES: dict[str, tuple[int, bool]] = {
    "invalid_request_error": (400, False),
    "authentication_error": (401, False),
    "billing_error": (402, False),
    "permission_error": (403, False),
    "not_found_error": (404, False),
    "request_too_large": (413, False),
    "rate_limit_error": (429, True),
    "api_error": (500, True),
    "timeout_error": (504, True),
    "overloaded_error": (529, True),
}


def _error_detail(payload: Any) -> tuple[str | None, str | None]:
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return None, None
    kind, message = error.get("type"), error.get("message")
    return (kind if isinstance(kind, str) else None), (message if isinstance(message, str) else None)


def classify_error(status: int, body: bytes, retry_after: str | None, *, endpoint: str | None) -> UpstreamStatusError:
    """A non-2xx reply, classified by its ``error.type`` where it has one."""
    kind, detail = _error_detail(json_or_none(body))
    fault = ERROR_TYPES[kind][1] if kind in ERROR_TYPES else None
    return status_error(status, provider_type=kind, detail=detail, upstream_fault=fault,
                        retry_after_s=retry_after, endpoint=endpoint)


def _stream_error(payload: dict[str, Any], endpoint: str | None) -> UpstreamStatusError:
    kind, detail = _error_detail(payload)
    status, fault = ERROR_TYPES.get(kind or "", (500, None))
    return status_error(status, provider_type=kind, detail=f"mid-stream error event: {detail}",
                        upstream_fault=fault, endpoint=endpoint)


def _usage(usage: dict[str, Any]) -> dict[str, Any]:
    def count(key: str) -> int:
        return token_count(usage.get(key)) or 0

    cached = count("cache_read_input_tokens")
    prompt = count("input_tokens") + count("cache_creation_input_tokens") + cached
    return usage_dict(prompt, count("output_tokens"), cached_tokens=cached)


def _finish_reason(stop_reason: Any, endpoint: str | None) -> str:
    return FINISH_REASONS.get(as_str(stop_reason, "stop_reason", endpoint), "stop")


def parse_message(
    payload: bytes, *, created: int, fallback_id: str, endpoint: str | None, model: str | None = None
) -> dict[str, Any]:
    """A Messages reply as an OpenAI ``chat.completion`` (``model``: the
    endpoint's, when the reply names none)."""
    data = load_json_object(payload, "message", endpoint)
    content = data.get("content")
    if data.get("type") != "message" or not isinstance(content, list):
        raise UpstreamProtocolError("upstream reply is not an Anthropic message", endpoint=endpoint)
    blocks = [b for b in content if isinstance(b, dict)]
    text = "".join(as_str(b.get("text"), "text block", endpoint) or "" for b in blocks if b.get("type") == "text")
    tool_calls = [_tool_call(b, endpoint) for b in blocks if b.get("type") == "tool_use"]
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": as_str(data.get("id"), "message id", endpoint) or fallback_id,
        "object": "chat.completion",
        "created": created,
        "model": as_str(data.get("model"), "message model", endpoint) or model,
        "choices": [completion_choice(message, _finish_reason(data.get("stop_reason"), endpoint))],
        "usage": _usage(dict_or_empty(data.get("usage"))),
    }


def _tool_call(block: dict[str, Any], endpoint: str | None) -> dict[str, Any]:
    arguments = json.dumps(block.get("input") or {}, separators=(",", ":"))
    return {"id": as_str(block.get("id"), "tool_use id", endpoint), "type": "function",
            "function": {"name": as_str(block.get("name"), "tool_use name", endpoint), "arguments": arguments}}


class AnthropicStreamTranslator:
    """One Anthropic message stream -> OpenAI chunks (see the module doc)."""

    __slots__ = ("_chunks", "_endpoint", "_tools", "_usage", "_started", "_done", "usage", "finish_reason")

    def __init__(self, model: str, completion_id: str, created: int, *, endpoint: str | None = None):
        self._chunks = ChunkBuilder(completion_id, created, model)
        self._endpoint = endpoint
        self._tools: dict[int, int] = {}  # content block index -> OpenAI tool-call index
        self._usage: dict[str, Any] = {}
        self._started = False
        self._done = False
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, event: SSEEvent) -> list[dict[str, Any]]:
        if event.data is None or self._done:
            return []
        payload = load_json_object(event.data, "stream event", self._endpoint)
        kind = as_str(payload.get("type"), "stream event type", self._endpoint)
        if kind == "error":
            raise _stream_error(payload, self._endpoint)
        if kind == "message_start":
            return self._message_start(payload)
        if not self._started and kind != "ping":
            raise UpstreamProtocolError(f"stream event '{kind}' before message_start", endpoint=self._endpoint)
        handler = _HANDLERS.get(kind)
        return handler(self, payload) if handler else []  # ping and future event types

    def finish(self) -> list[dict[str, Any]]:
        if not self._done:
            raise UpstreamDisconnected("anthropic stream ended before message_stop", endpoint=self._endpoint)
        return []

    def _message_start(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        message = as_dict(payload.get("message"), "message_start message", self._endpoint)
        self._chunks.id = as_str(message.get("id"), "message id", self._endpoint) or self._chunks.id
        self._chunks.model = as_str(message.get("model"), "message model", self._endpoint) or self._chunks.model
        self._usage.update(dict_or_empty(message.get("usage")))
        self._started = True
        return [self._chunks.role()]

    def _block_start(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        block = as_dict(payload.get("content_block"), "content_block", self._endpoint)
        if block.get("type") == "tool_use":
            index = self._tools[self._block_index(payload)] = len(self._tools)
            call_id = as_str(block.get("id"), "tool_use id", self._endpoint)
            name = as_str(block.get("name"), "tool_use name", self._endpoint)
            return [self._chunks.tool_call(index, call_id=call_id, name=name)]
        text = as_str(block.get("text"), "text block", self._endpoint) if block.get("type") == "text" else None
        return [self._chunks.content(text)] if text else []

    def _block_delta(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        delta = as_dict(payload.get("delta"), "content_block_delta delta", self._endpoint)
        kind = delta.get("type")
        if kind == "text_delta":
            text = as_str(delta.get("text"), "text_delta text", self._endpoint)
            return [self._chunks.content(text)] if text else []
        if kind == "input_json_delta":
            fragment = as_str(delta.get("partial_json"), "partial_json", self._endpoint)
            if not fragment:
                return []
            index = self._tools.get(self._block_index(payload))
            if index is None:
                raise UpstreamProtocolError("input_json_delta outside a tool_use block", endpoint=self._endpoint)
            return [self._chunks.tool_call(index, arguments=fragment)]
        return []  # thinking, signature and citation deltas have no OpenAI form

    def _block_index(self, payload: dict[str, Any]) -> int:
        index = payload.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            raise UpstreamProtocolError("upstream content block index is not an integer", endpoint=self._endpoint)
        return index

    def _message_delta(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        # message_delta's usage is cumulative: it replaces the counts so far.
        self._usage.update(dict_or_empty(payload.get("usage")))
        delta = as_dict(payload.get("delta"), "message_delta delta", self._endpoint)
        if delta.get("stop_reason") is None:
            return []
        self.finish_reason = _finish_reason(delta["stop_reason"], self._endpoint)
        return [self._chunks.finish(self.finish_reason)]

    def _message_stop(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        self._done = True
        self.usage = _usage(self._usage)
        return [self._chunks.usage(self.usage)]


_HANDLERS = {
    "content_block_start": AnthropicStreamTranslator._block_start,
    "content_block_delta": AnthropicStreamTranslator._block_delta,
    "message_delta": AnthropicStreamTranslator._message_delta,
    "message_stop": AnthropicStreamTranslator._message_stop,
}
