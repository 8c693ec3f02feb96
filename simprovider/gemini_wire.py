"""Gemini wire format (`POST /v1beta/models/{model}:generateContent` and
`:streamGenerateContent?alt=sse`).

Parses a `generateContent` request into a `CompletionRequest` (`contents`
is required; the model and streaming come from the URL) and builds the
replies: `GenerateContentResponse` objects, whole or one per SSE event
(separated by CRLF, as Google sends them; the last one carries
`finishReason` and the full `usageMetadata`, and there is no end marker),
and google.rpc error objects.
"""

from __future__ import annotations

import json
import secrets
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

__all__ = ["GeminiStream", "failure_body", "invalid_body", "parse_generate_request", "response_body"]

FINISH_REASONS = {"stop": "STOP", "tool_calls": "STOP", "length": "MAX_TOKENS"}

_FAILURES: dict[int, tuple[str, str]] = {
    500: ("INTERNAL", "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    529: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    429: ("RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details."),
    400: ("INVALID_ARGUMENT", "The input token count exceeds the maximum number of tokens allowed."),
    401: ("UNAUTHENTICATED", "API key not valid. Please pass a valid API key. sk-sim-REVOKED****ab12"),
    403: ("PERMISSION_DENIED", "Permission denied on resource project sim-project-4242 (https://internal.sim.example/iam)."),
}


def _error(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return {"error": error}


def failure_body(status: int, retry_after_s: float | None = None) -> dict[str, Any]:
    kind, message = _FAILURES[status]
    details = None
    if status == 429 and retry_after_s is not None:
        details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after_s:g}s"}]
    return _error(status, kind, message, details)


def invalid_body(message: str) -> dict[str, Any]:
    return _error(400, "INVALID_ARGUMENT", message)


def parse_generate_request(body: bytes, model: str, stream: bool) -> CompletionRequest:
    """Raises `InvalidRequest` where the real API would answer 400."""
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise InvalidRequest(f"Invalid JSON payload received: {exc}") from exc
    if not isinstance(payload, dict):
        raise InvalidRequest("Invalid JSON payload received: expected an object")
    contents = payload.get("contents")
    if not isinstance(contents, list) or not contents or not all(isinstance(c, dict) for c in contents):
        raise InvalidRequest("* GenerateContentRequest.contents: contents is not specified")
    config = payload.get("generationConfig") or {}
    max_tokens = config.get("maxOutputTokens") if isinstance(config, dict) else None
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise InvalidRequest("* GenerateContentRequest.generation_config.max_output_tokens: must be positive")
    count = config.get("candidateCount", 1) if isinstance(config, dict) else 1
    if type(count) is not int or not 1 <= count <= 8:
        raise InvalidRequest("* GenerateContentRequest.generation_config.candidate_count: must be 1 to 8")
    last = contents[-1]
    last_text = _text(last)
    system = payload.get("systemInstruction")
    prompt = word_count(_text(system)) + sum(word_count(_text(c)) for c in contents)
    return CompletionRequest(
        model=model,
        stream=stream,
        include_usage=True,
        max_tokens=max_tokens,
        prompt_tokens=max(1, prompt),
        first_word=continuation_start(last_text) if last.get("role") == "model" else 1,
        tool_name=_first_tool(payload.get("tools")),
        asks_for_tool=last.get("role", "user") == "user" and TOOL_CALL_TEXT in last_text,
        after_tool_result=any(isinstance(p, dict) and "functionResponse" in p for p in last.get("parts") or ()),
        choices=count,
    )


def _text(content: Any) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return ""
    return " ".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))


def _first_tool(tools: Any) -> str | None:
    for tool in tools if isinstance(tools, list) else ():
        declarations = tool.get("functionDeclarations") if isinstance(tool, dict) else None
        if isinstance(declarations, list) and declarations and isinstance(declarations[0], dict):
            name = declarations[0].get("name")
            return name if isinstance(name, str) and name else None
    return None


def _usage(request: CompletionRequest, completion_tokens: int) -> dict[str, int]:
    prompt = request.prompt_tokens
    return {"promptTokenCount": prompt, "candidatesTokenCount": completion_tokens, "totalTokenCount": prompt + completion_tokens}


def _response(request: CompletionRequest, response_id: str, parts: list[dict[str, Any]],
              finish: str | None = None, usage: dict[str, int] | None = None) -> dict[str, Any]:
    candidates = []
    for index in range(request.choices):  # the reply once per candidate, as the OpenAI wire's choices
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if finish:
            candidate["finishReason"] = finish
        candidate["index"] = index
        candidates.append(candidate)
    response: dict[str, Any] = {"candidates": candidates}
    if usage:
        response["usageMetadata"] = usage
    response["modelVersion"] = request.model
    response["responseId"] = response_id
    return response


def _function_call(name: str) -> dict[str, Any]:
    return {"functionCall": {"name": name, "args": TOOL_ARGUMENTS}}


def response_body(request: CompletionRequest, reply: Reply) -> dict[str, Any]:
    """A whole non-streamed `GenerateContentResponse` carrying `reply`."""
    parts = [_function_call(reply.tool_name)] if reply.tool_name else [{"text": reply.text}]
    return _response(request, secrets.token_urlsafe(16), parts, "STOP", _usage(request, reply.completion_tokens * request.choices))


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\r\n\r\n"


class GeminiStream:
    """The events of one `streamGenerateContent?alt=sse` stream."""

    malformed = b'data: {"candidates": [\r\n\r\n'

    def __init__(self, request: CompletionRequest) -> None:
        self._request = request
        self._id = secrets.token_urlsafe(16)
        marker = "\x00text\x00"
        template = _sse(_response(request, self._id, [{"text": marker}]))
        self._text_around = template.split(json.dumps(marker).encode())  # the text goes in every candidate

    def start(self) -> list[bytes]:
        return []  # Gemini's first event already carries content

    def text(self, delta: str) -> bytes:
        return json.dumps(delta).encode().join(self._text_around)

    def tool_call(self, name: str) -> list[bytes]:
        return [_sse(_response(self._request, self._id, [_function_call(name)]))]

    def finish(self, reason: str, completion_tokens: int) -> list[bytes]:
        usage = _usage(self._request, completion_tokens * self._request.choices)
        return [_sse(_response(self._request, self._id, [{"text": ""}], FINISH_REASONS.get(reason, "STOP"), usage))]
