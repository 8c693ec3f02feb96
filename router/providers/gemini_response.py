"""Reading Gemini's replies: ``GenerateContentResponse`` objects (whole, or
one per SSE event when streamed with ``alt=sse``) and error objects.

Each candidate is the choice of its ``index`` (the codec asks for more than
one when the request's ``n`` does; streamed, a candidate's pieces may
share events with others', and the stream is done once every candidate
has finished). Text parts become content (``thought`` parts are skipped); each ``functionCall`` part
arrives whole, so it becomes a single tool-call delta carrying the id the
router makes up (Gemini's calls have none), the name and all the arguments.
``finishReason`` maps STOP -> stop (tool_calls when the turn called a
tool), MAX_TOKENS -> length, the safety family -> content_filter, anything
else -> stop; a prompt blocked before any candidate is content_filter.

Usage comes from ``usageMetadata`` (the latest one wins when streamed):
prompt = promptTokenCount, completion = candidatesTokenCount +
thoughtsTokenCount, total = totalTokenCount; a count that is not a
believable integer reads as absent, as does a ``usageMetadata`` that is not
an object. A Gemini stream has no end marker: it is done once a candidate
has a ``finishReason``. Wrong types where the answer is read (candidates,
content, parts, finishReason, promptFeedback) are an
``UpstreamProtocolError``.

Errors are classified by the ``error.status`` name (google.rpc codes);
a 429's ``RetryInfo.retryDelay`` stands in for a missing Retry-After.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from router.errors import UpstreamDisconnected, UpstreamProtocolError, UpstreamStatusError
from router.providers.base import (
    as_dict,
    as_list,
    as_str,
    dict_or_empty,
    json_or_none,
    load_json_object,
    status_error,
    token_count,
)
from router.providers.chunks import ChunkBuilder, completion_choice, usage_dict
from router.sse import SSEEvent

__all__ = ["GeminiStreamTranslator", "classify_error", "parse_generate_response"]

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}

# error.status -> (its HTTP status, the provider's fault?)
ERROR_STATUSES: dict[str, tuple[int, bool]] = {
    "INVALID_ARGUMENT": (400, False),
    "FAILED_PRECONDITION": (400, False),
    "OUT_OF_RANGE": (400, False),
    "UNAUTHENTICATED": (401, False),
    "PERMISSION_DENIED": (403, False),
    "NOT_FOUND": (404, False),
    "RESOURCE_EXHAUSTED": (429, True),
    "INTERNAL": (500, True),
    "UNAVAILABLE": (503, True),
    "DEADLINE_EXCEEDED": (504, True),
}


def _error_fields(payload: Any) -> tuple[str | None, str | None, float | None]:
    if isinstance(payload, list) and payload:  # non-SSE streams wrap it in an array
        payload = payload[0]
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return None, None, None
    kind, message = error.get("status"), error.get("message")
    return (kind if isinstance(kind, str) else None), (message if isinstance(message, str) else None), _retry_delay_s(error)


def _retry_delay_s(error: dict[str, Any]) -> float | None:
    """``RetryInfo.retryDelay`` ("3s", a protobuf Duration) in seconds, when
    one is given and is a finite, non-negative number."""
    details = error.get("details")
    for detail in details if isinstance(details, list) else ():
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                delay_s = float(delay[:-1])
            except ValueError:
                return None
            return delay_s if math.isfinite(delay_s) and delay_s >= 0 else None
    return None


def classify_error(status: int, body: bytes, retry_after: str | None, *, endpoint: str | None) -> UpstreamStatusError:
    """A non-2xx reply, classified by its ``error.status`` where it has one."""
    kind, detail, delay_s = _error_fields(json_or_none(body))
    fault = ERROR_STATUSES[kind][1] if kind in ERROR_STATUSES else None
    return status_error(status, provider_type=kind, detail=detail, upstream_fault=fault,
                        retry_after_s=retry_after if retry_after else delay_s, endpoint=endpoint)


def _embedded_error(payload: dict[str, Any], endpoint: str | None) -> UpstreamStatusError:
    kind, detail, delay_s = _error_fields(payload)
    code = payload["error"].get("code") if isinstance(payload.get("error"), dict) else None
    known = isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599
    status, fault = ERROR_STATUSES.get(kind or "", (code if known else 500, None))
    return status_error(status, provider_type=kind, detail=f"error in a 200 reply: {detail}",
                        upstream_fault=fault, retry_after_s=delay_s, endpoint=endpoint)


def _usage(metadata: dict[str, Any]) -> dict[str, Any]:
    prompt = token_count(metadata.get("promptTokenCount")) or 0
    thoughts = token_count(metadata.get("thoughtsTokenCount")) or 0
    completion = (token_count(metadata.get("candidatesTokenCount")) or 0) + thoughts
    return usage_dict(prompt, completion, token_count(metadata.get("totalTokenCount")),
                      cached_tokens=token_count(metadata.get("cachedContentTokenCount")), reasoning_tokens=thoughts)


def _finish_reason(raw: str, called_tools: bool) -> str:
    reason = FINISH_REASONS.get(raw, "stop")
    return "tool_calls" if called_tools and reason == "stop" else reason


def _candidates(payload: dict[str, Any], endpoint: str | None,
                choices: int = 1) -> list[tuple[int, list[dict[str, Any]], str | None]]:
    """``(index, parts, raw finish reason)`` of each candidate, by index; a
    blocked prompt reads as every one of ``choices`` with no parts and the
    SAFETY finish, an event with neither as no candidate."""
    candidates = as_list(payload.get("candidates"), "candidates", endpoint)
    if not candidates:
        blocked = as_dict(payload.get("promptFeedback"), "promptFeedback", endpoint).get("blockReason")
        return [(index, [], "SAFETY") for index in range(choices)] if blocked else []
    out = []
    for position, raw in enumerate(candidates):
        where = f"candidates[{position}]"
        candidate = as_dict(raw, where, endpoint)
        index = candidate.get("index", position)
        if type(index) is not int or not 0 <= index < 64:
            raise UpstreamProtocolError(f"{where}.index is not a small integer", endpoint=endpoint)
        content = as_dict(candidate.get("content"), f"{where}.content", endpoint)
        parts = as_list(content.get("parts"), f"{where}.content.parts", endpoint)
        finish = as_str(candidate.get("finishReason"), f"{where}.finishReason", endpoint)
        out.append((index, [p for p in parts if isinstance(p, dict) and not p.get("thought")], finish))
    return sorted(out, key=lambda c: c[0])


def _call(part: dict[str, Any], endpoint: str | None) -> tuple[str, str]:
    call = part["functionCall"]
    name = as_str(call.get("name"), "functionCall name", endpoint) or ""
    return name, json.dumps(call.get("args") or {}, separators=(",", ":"))


def parse_generate_response(
    payload: bytes, *, model: str | None, created: int, new_token: Callable[[], str], endpoint: str | None
) -> dict[str, Any]:
    """A ``generateContent`` reply as an OpenAI ``chat.completion``."""
    data = load_json_object(payload, "response", endpoint)
    if "error" in data:
        raise _embedded_error(data, endpoint)
    candidates = _candidates(data, endpoint) or [(0, [], None)]
    choices = [_choice(index, parts, raw_finish, new_token, endpoint) for index, parts, raw_finish in candidates]
    return {
        "id": f"chatcmpl-{as_str(data.get('responseId'), 'responseId', endpoint) or new_token()}",
        "object": "chat.completion",
        "created": created,
        "model": as_str(data.get("modelVersion"), "modelVersion", endpoint) or model,
        "choices": choices,
        "usage": _usage(dict_or_empty(data.get("usageMetadata"))),
    }


def _choice(index: int, parts: list[dict[str, Any]], raw_finish: str | None, new_token: Callable[[], str],
            endpoint: str | None) -> dict[str, Any]:
    text = "".join(p["text"] for p in parts if isinstance(p.get("text"), str))
    tool_calls = []
    for part in parts:
        if isinstance(part.get("functionCall"), dict):
            name, arguments = _call(part, endpoint)
            tool_calls.append({"id": f"call_{new_token()}", "type": "function",
                               "function": {"name": name, "arguments": arguments}})
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return completion_choice(message, _finish_reason(raw_finish or "STOP", bool(tool_calls)), index)


class GeminiStreamTranslator:
    """One ``streamGenerateContent?alt=sse`` stream -> OpenAI chunks, for
    ``choices`` candidates (the request's ``n``)."""

    __slots__ = ("_chunks", "_new_token", "_endpoint", "_choices", "_tool_calls", "_finished", "_metadata",
                 "_started", "usage", "finish_reason")

    def __init__(self, model: str, new_token: Callable[[], str], created: int, *, endpoint: str | None = None,
                 choices: int = 1):
        self._chunks = ChunkBuilder(f"chatcmpl-{new_token()}", created, model)
        self._new_token = new_token
        self._endpoint = endpoint
        self._choices = choices
        self._tool_calls: dict[int, int] = {}  # candidate index -> its tool calls so far (opened: has an entry)
        self._finished: dict[int, str] = {}  # candidate index -> its OpenAI finish reason
        self._metadata: dict[str, Any] | None = None
        self._started = False
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None  # the first choice's, once it has one

    @property
    def done(self) -> bool:
        return len(self._finished) >= self._choices

    def feed(self, event: SSEEvent) -> list[dict[str, Any]]:
        if event.data is None:
            return []
        payload = load_json_object(event.data, "stream event", self._endpoint)
        if "error" in payload:
            raise _embedded_error(payload, self._endpoint)
        if isinstance(payload.get("usageMetadata"), dict):
            self._metadata = payload["usageMetadata"]
        if self.done:
            return []  # a trailing usage-only event
        if not self._started:
            self._start(payload)
        out: list[dict[str, Any]] = []
        for index, parts, raw_finish in _candidates(payload, self._endpoint, self._choices):
            if index in self._finished:
                continue
            if index not in self._tool_calls:
                self._tool_calls[index] = 0
                out.append(self._chunks.role(index))
            for part in parts:
                if isinstance(part.get("text"), str) and part["text"]:
                    out.append(self._chunks.content(part["text"], index))
                elif isinstance(part.get("functionCall"), dict):
                    out.append(self._tool_call(index, part))
            if raw_finish:
                reason = self._finished[index] = _finish_reason(raw_finish, self._tool_calls[index] > 0)
                if self.finish_reason is None or index == 0:
                    self.finish_reason = reason
                out.append(self._chunks.finish(reason, index))
        return out

    def finish(self) -> list[dict[str, Any]]:
        if not self.done:
            raise UpstreamDisconnected("gemini stream ended before every candidate's finishReason", endpoint=self._endpoint)
        if self._metadata is None:
            return []
        self.usage = _usage(self._metadata)
        return [self._chunks.usage(self.usage)]

    def _start(self, payload: dict[str, Any]) -> None:
        self._started = True
        response_id = as_str(payload.get("responseId"), "responseId", self._endpoint)
        if response_id:
            self._chunks.id = f"chatcmpl-{response_id}"
        self._chunks.model = as_str(payload.get("modelVersion"), "modelVersion", self._endpoint) or self._chunks.model

    def _tool_call(self, choice: int, part: dict[str, Any]) -> dict[str, Any]:
        name, arguments = _call(part, self._endpoint)
        index = self._tool_calls[choice]
        self._tool_calls[choice] = index + 1
        return self._chunks.tool_call(index, call_id=f"call_{self._new_token()}", name=name, arguments=arguments,
                                      choice=choice)
