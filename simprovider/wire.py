"""OpenAI chat-completions wire format: parse a request, build the replies.

Pure functions, no I/O and no clock: the caller passes `created` and the
completion id, so every payload here is reproducible in tests.
`OpenAIStream` is the OpenAI stream encoder the playback drives (see
`formats`); `anthropic_wire` and `gemini_wire` are its siblings.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from .prefix_cache import message_prefixes
from .request import (
    TOOL_ARGUMENTS,
    TOOL_CALL_TEXT,
    CompletionRequest,
    InvalidRequest,
    Reply,
    continuation_start,
    token_text,
    word_count,
)

__all__ = [
    "DONE_EVENT",
    "ChunkFactory",
    "MALFORMED_EVENT",
    "MODEL_ID",
    "CompletionRequest",
    "InvalidRequest",
    "OpenAIStream",
    "completion_body",
    "error_body",
    "failure_body",
    "invalid_body",
    "models_body",
    "new_completion_id",
    "parse_completion_request",
    "reply_body",
    "split_arguments",
    "sse_event",
    "token_text",
    "usage_body",
]

MODEL_ID = "sim-model"
"""The one model the simulator lists, and the default when a request names none."""

DONE_EVENT = b"data: [DONE]\n\n"

MALFORMED_EVENT = b'data: {"choices": [\n\n'
"""An event whose data is cut-off JSON, as a broken upstream might send."""


def parse_completion_request(body: bytes) -> CompletionRequest:
    """Read the fields the simulator needs; validation is deliberately minimal.

    Raises:
        InvalidRequest: if the body is not a JSON object with a `messages` list,
            or a field it uses has the wrong type.
    """
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise InvalidRequest("request body must be a JSON object")
    messages = payload.get("messages")
    if not isinstance(messages, list):
        raise InvalidRequest("'messages' is required and must be a list")
    model = payload.get("model") or MODEL_ID
    if not isinstance(model, str):
        raise InvalidRequest("'model' must be a string")
    stream_options = payload.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise InvalidRequest("'stream_options' must be an object")
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    last_text = _text(last)
    return CompletionRequest(
        model=model,
        stream=payload.get("stream") is True,
        include_usage=stream_options.get("include_usage") is True,
        max_tokens=_max_tokens(payload),
        prompt_tokens=max(1, sum(word_count(_text(m)) for m in messages)),
        first_word=continuation_start(last_text) if last.get("role") == "assistant" else 1,
        tool_name=_first_tool(payload.get("tools")),
        asks_for_tool=last.get("role") == "user" and TOOL_CALL_TEXT in last_text,
        after_tool_result=last.get("role") == "tool",
        choices=_choices(payload),
        prefixes=message_prefixes(messages, lambda m: word_count(_text(m))),
    )


def _choices(payload: dict[str, Any]) -> int:
    n = payload.get("n")
    if n is None:
        return 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 128:
        raise InvalidRequest("'n' must be an integer from 1 to 128")
    return n


def _first_tool(tools: Any) -> str | None:
    if not isinstance(tools, list) or not tools or not isinstance(tools[0], dict):
        return None
    name = (tools[0].get("function") or {}).get("name")
    return name if isinstance(name, str) and name else None


def _max_tokens(payload: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = payload.get(key)
        if value is None:
            continue
        # bool is an int subclass; `true` is not a token limit.
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidRequest(f"'{key}' must be a non-negative integer")
        return value
    return None


def _text(message: Any) -> str:
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
        return " ".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def new_completion_id() -> str:
    return f"chatcmpl-sim-{secrets.token_hex(12)}"


def usage_body(prompt_tokens: int, completion_tokens: int, cached_tokens: int | None = None) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:  # a profile with a prefix cache reports it, as OpenAI does
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return usage


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def sse_event(payload: dict[str, Any]) -> bytes:
    """One server-sent event carrying `payload` as compact JSON."""
    return b"data: " + _compact(payload).encode() + b"\n\n"


class ChunkFactory:
    """Builds the `chat.completion.chunk` events of one stream.

    With `include_usage`, every chunk carries `"usage": null` and the stream
    ends with a usage-only chunk, as OpenAI does.

    Content chunks are the hot path (one per token, up to thousands per
    second under benchmark load), so their constant JSON around the text is
    encoded once per stream and choice index; the bytes are identical to
    `sse_event` of the full dict, which the tests check. Every chunk names
    its choice's `index` (0 unless the request asked for several, `n`).
    """

    def __init__(
        self, completion_id: str, created: int, model: str, include_usage: bool
    ) -> None:
        self._head = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        self._include_usage = include_usage
        self._templates: dict[int, tuple[bytes, bytes]] = {}

    def _template(self, index: int) -> tuple[bytes, bytes]:
        marker = "\x00content\x00"
        template = self._chunk([_choice({"content": marker}, None, index)])
        # rpartition: the content comes after every field a client chose.
        prefix, _, suffix = template.rpartition(_compact(marker).encode())
        self._templates[index] = (prefix, suffix)
        return prefix, suffix

    def _chunk(self, choices: list[dict[str, Any]]) -> bytes:
        payload: dict[str, Any] = {**self._head, "choices": choices}
        if self._include_usage:
            payload["usage"] = None
        return sse_event(payload)

    def role(self, index: int = 0) -> bytes:
        return self._chunk([_choice({"role": "assistant", "content": ""}, None, index)])

    def content(self, text: str, index: int = 0) -> bytes:
        prefix, suffix = self._templates.get(index) or self._template(index)
        return prefix + _compact(text).encode() + suffix

    def tool_call(self, call: dict[str, Any], index: int = 0) -> bytes:
        """A chunk carrying one tool-call delta (`index`, then `id`, `function`...)."""
        return self._chunk([_choice({"tool_calls": [call]}, None, index)])

    def finish(self, reason: str = "stop", index: int = 0) -> bytes:
        return self._chunk([_choice({}, reason, index)])

    def usage(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int | None = None) -> bytes:
        usage = usage_body(prompt_tokens, completion_tokens, cached_tokens)
        return sse_event({**self._head, "choices": [], "usage": usage})


def _choice(delta: dict[str, Any], finish_reason: str | None, index: int = 0) -> dict[str, Any]:
    return {"index": index, "delta": delta, "finish_reason": finish_reason}


def completion_body(
    completion_id: str, created: int, model: str, prompt_tokens: int, n_tokens: int
) -> dict[str, Any]:
    """A whole non-streamed `chat.completion` of `n_tokens` numbered words."""
    request = CompletionRequest(model, False, False, None, prompt_tokens)
    return reply_body(request, Reply(1, n_tokens), completion_id, created)


def reply_body(request: CompletionRequest, reply: Reply, completion_id: str, created: int) -> dict[str, Any]:
    """A whole non-streamed `chat.completion` carrying `reply`, once per
    choice the request asked for (`n`)."""

    def message() -> dict[str, Any]:
        if reply.tool_name:
            return {"role": "assistant", "content": None, "tool_calls": [_tool_call(reply.tool_name)]}
        return {"role": "assistant", "content": reply.text}

    finish_reason = "tool_calls" if reply.tool_name else "stop"
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": request.model,
        "choices": [
            {"index": index, "message": message(), "finish_reason": finish_reason}
            for index in range(request.choices)
        ],
        "usage": usage_body(request.prompt_tokens, reply.completion_tokens * request.choices, request.cached_tokens),
    }


def _tool_call(name: str) -> dict[str, Any]:
    return {
        "id": f"call_sim_{secrets.token_hex(8)}",
        "type": "function",
        "function": {"name": name, "arguments": _compact(TOOL_ARGUMENTS)},
    }


def split_arguments(arguments: dict[str, Any]) -> list[str]:
    """Compact JSON of `arguments` in two fragments, as providers stream them."""
    text = _compact(arguments)
    middle = len(text) // 2
    return [text[:middle], text[middle:]]


class OpenAIStream:
    """The events of one OpenAI stream, in the order the playback asks for them.

    With several choices (`n`), each step sends one chunk per choice, in
    index order, in one write (as OpenAI interleaves them), and the usage
    counts every choice's tokens."""

    malformed = MALFORMED_EVENT

    def __init__(self, request: CompletionRequest) -> None:
        self._request = request
        self._indexes = range(request.choices)
        self._chunks = ChunkFactory(new_completion_id(), int(time.time()), request.model, request.include_usage)

    def start(self) -> list[bytes]:
        return [self._chunks.role(i) for i in self._indexes]

    def text(self, delta: str) -> bytes:
        if self._request.choices == 1:
            return self._chunks.content(delta)
        return b"".join(self._chunks.content(delta, i) for i in self._indexes)

    def tool_call(self, name: str) -> list[bytes]:
        events = []
        for index in self._indexes:
            call = _tool_call(name)
            head = {"index": 0, "id": call["id"], "type": "function", "function": {"name": name, "arguments": ""}}
            fragments = [{"index": 0, "function": {"arguments": part}} for part in split_arguments(TOOL_ARGUMENTS)]
            events += [self._chunks.tool_call(delta, index) for delta in (head, *fragments)]
        return events

    def finish(self, reason: str, completion_tokens: int) -> list[bytes]:
        events = [self._chunks.finish(reason, i) for i in self._indexes]
        if self._request.include_usage:
            events.append(self._chunks.usage(self._request.prompt_tokens, completion_tokens * self._request.choices, self._request.cached_tokens))
        return [*events, DONE_EVENT]


_FAILURES: dict[int, tuple[str, str, str]] = {
    # status: (message, type, code), worded like OpenAI's own errors
    500: ("The server had an error while processing your request.", "server_error", "internal_error"),
    503: ("The engine is currently overloaded, please try again later.", "server_error", "overloaded"),
    529: ("The engine is currently overloaded, please try again later.", "server_error", "overloaded"),
    429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    400: ("This model's maximum context length is 8192 tokens.", "invalid_request_error", "context_length_exceeded"),
    401: ("Incorrect API key provided: sk-sim-REVOKED****ab12. You can find your API key at https://internal.sim.example/account/api-keys.",
          "invalid_request_error", "invalid_api_key"),
    403: ("Project proj_sim_8f3a9c2e1d7b6a5f4e3d2c1b does not have access to this model (see http://10.20.30.40:8080/admin).",
          "invalid_request_error", "model_not_available"),
}


def failure_body(status: int, retry_after_s: float | None = None) -> dict[str, Any]:
    """The OpenAI error a simulated `http_*` failure answers with."""
    return error_body(*_FAILURES[status])


def invalid_body(message: str) -> dict[str, Any]:
    return error_body(message, "invalid_request_error")


def error_body(message: str, error_type: str, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error envelope: `{"error": {"message", "type", "code"}}`."""
    return {"error": {"message": message, "type": error_type, "code": code}}


def models_body() -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "simprovider"}],
    }
