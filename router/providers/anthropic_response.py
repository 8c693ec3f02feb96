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
blocks; the translator maps one to the other. Errors are classified by
Anthropic's ``error.type`` (each documents its HTTP status); a mid-stream
``error`` event becomes the same ``UpstreamStatusError`` its type would
have been as a status (``overloaded_error`` -> 529, retryable).
"""

from __future__ import annotations

import json
from typing import Any

from router.errors import UpstreamDisconnected, UpstreamProtocolError, UpstreamStatusError
from router.providers.base import load_json_object, status_error
from router.providers.chunks import ChunkBuilder, usage_dict
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
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        payload = None
    kind, detail = _error_detail(payload)
    fault = ERROR_TYPES[kind][1] if kind in ERROR_TYPES else None
    return status_error(status, provider_type=kind, detail=detail, upstream_fault=fault,
                        retry_after_s=retry_after, endpoint=endpoint)


def _stream_error(payload: dict[str, Any], endpoint: str | None) -> UpstreamStatusError:
    kind, detail = _error_detail(payload)
    status, fault = ERROR_TYPES.get(kind or "", (500, None))
    return status_error(status, provider_type=kind, detail=f"mid-stream error event: {detail}",
                        upstream_fault=fault, endpoint=endpoint)


def _usage(usage: dict[str, Any]) -> dict[str, Any]:
    cached = usage.get("cache_read_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + (usage.get("cache_creation_input_tokens") or 0) + cached
    return usage_dict(prompt, usage.get("output_tokens") or 0, cached_tokens=cached)


def parse_message(payload: bytes, *, created: int, fallback_id: str, endpoint: str | None) -> dict[str, Any]:
    """A Messages reply as an OpenAI ``chat.completion``."""
    data = load_json_object(payload, "message", endpoint)
    content = data.get("content")
    if data.get("type") != "message" or not isinstance(content, list):
        raise UpstreamProtocolError("upstream reply is not an Anthropic message", endpoint=endpoint)
    text = "".join(b.get("text") or "" for b in content if isinstance(b, dict) and b.get("type") == "text")
    tool_calls = [
        {"id": b.get("id"), "type": "function",
         "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input") or {}, separators=(",", ":"))}}
        for b in content
        if isinstance(b, dict) and b.get("type") == "tool_use"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": data.get("id") or fallback_id,
        "object": "chat.completion",
        "created": created,
        "model": data.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": FINISH_REASONS.get(data.get("stop_reason"), "stop")}],
        "usage": _usage(data.get("usage") or {}),
    }


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
        kind = payload.get("type")
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
        message = payload.get("message") or {}
        self._chunks.id = message.get("id") or self._chunks.id
        self._chunks.model = message.get("model") or self._chunks.model
        self._usage.update(message.get("usage") or {})
        self._started = True
        return [self._chunks.role()]

    def _block_start(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        block = payload.get("content_block") or {}
        if block.get("type") == "tool_use":
            index = self._tools[payload.get("index")] = len(self._tools)
            return [self._chunks.tool_call(index, call_id=block.get("id"), name=block.get("name"))]
        if block.get("type") == "text" and block.get("text"):
            return [self._chunks.content(block["text"])]
        return []

    def _block_delta(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        delta = payload.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._chunks.content(delta["text"])]
        if kind == "input_json_delta" and delta.get("partial_json"):
            index = self._tools.get(payload.get("index"))
            if index is None:
                raise UpstreamProtocolError("input_json_delta outside a tool_use block", endpoint=self._endpoint)
            return [self._chunks.tool_call(index, arguments=delta["partial_json"])]
        return []  # thinking, signature and citation deltas have no OpenAI form

    def _message_delta(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        # message_delta's usage is cumulative: it replaces the counts so far.
        self._usage.update(payload.get("usage") or {})
        stop_reason = (payload.get("delta") or {}).get("stop_reason")
        if stop_reason is None:
            return []
        self.finish_reason = FINISH_REASONS.get(stop_reason, "stop")
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
