"""OpenAI chat-completions wire format: parse a request, build the replies.

Pure functions, no I/O and no clock: the caller passes `created` and the
completion id, so every payload here is reproducible in tests.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DONE_EVENT",
    "ChunkFactory",
    "MALFORMED_EVENT",
    "MODEL_ID",
    "CompletionRequest",
    "InvalidRequest",
    "completion_body",
    "error_body",
    "models_body",
    "new_completion_id",
    "parse_completion_request",
    "sse_event",
    "token_text",
    "usage_body",
]

MODEL_ID = "sim-model"
"""The one model the simulator lists, and the default when a request names none."""

DONE_EVENT = b"data: [DONE]\n\n"

MALFORMED_EVENT = b'data: {"choices": [\n\n'
"""An event whose data is cut-off JSON, as a broken upstream might send."""


class InvalidRequest(ValueError):
    """The request body is not a usable chat completion request (HTTP 400)."""


@dataclass(frozen=True)
class CompletionRequest:
    """The parts of a chat completion request the simulator acts on.

    Attributes:
        model: Echoed back in every reply; `sim-model` when absent.
        stream: Whether to answer with server-sent events.
        include_usage: `stream_options.include_usage`; adds a usage chunk.
        max_tokens: `max_completion_tokens`, else `max_tokens`, else None.
        prompt_tokens: Rough prompt size: whitespace-separated words in all
            message contents, at least 1.
    """

    model: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    prompt_tokens: int


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
    return CompletionRequest(
        model=model,
        stream=payload.get("stream") is True,
        include_usage=stream_options.get("include_usage") is True,
        max_tokens=_max_tokens(payload),
        prompt_tokens=max(1, sum(_word_count(m) for m in messages)),
    )


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


def _word_count(message: Any) -> int:
    if not isinstance(message, dict):
        return 0
    content = message.get("content")
    if isinstance(content, str):
        return len(content.split())
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
        return sum(
            len(part["text"].split())
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return 0


def new_completion_id() -> str:
    return f"chatcmpl-sim-{secrets.token_hex(12)}"


def token_text(index: int) -> str:
    """The content delta of token `index` (1-based): `w1`, ` w2`, ` w3`, ...

    Numbered words let a client check that a stream has no gap or repeat.
    """
    return f"w{index}" if index == 1 else f" w{index}"


def usage_body(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


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
    encoded once per stream; the bytes are identical to `sse_event` of the
    full dict, which the tests check.
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
        marker = "\x00content\x00"
        template = self._chunk([_choice({"content": marker}, None)])
        # rpartition: the content comes after every field a client chose.
        self._content_prefix, _, self._content_suffix = template.rpartition(_compact(marker).encode())

    def _chunk(self, choices: list[dict[str, Any]]) -> bytes:
        payload: dict[str, Any] = {**self._head, "choices": choices}
        if self._include_usage:
            payload["usage"] = None
        return sse_event(payload)

    def role(self) -> bytes:
        return self._chunk([_choice({"role": "assistant", "content": ""}, None)])

    def content(self, text: str) -> bytes:
        return self._content_prefix + _compact(text).encode() + self._content_suffix

    def finish(self, reason: str = "stop") -> bytes:
        return self._chunk([_choice({}, reason)])

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        usage = usage_body(prompt_tokens, completion_tokens)
        return sse_event({**self._head, "choices": [], "usage": usage})


def _choice(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "finish_reason": finish_reason}


def completion_body(
    completion_id: str, created: int, model: str, prompt_tokens: int, n_tokens: int
) -> dict[str, Any]:
    """A whole non-streamed `chat.completion` of `n_tokens` numbered words."""
    content = "".join(token_text(i) for i in range(1, n_tokens + 1))
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": usage_body(prompt_tokens, n_tokens),
    }


def error_body(message: str, error_type: str, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error envelope: `{"error": {"message", "type", "code"}}`."""
    return {"error": {"message": message, "type": error_type, "code": code}}


def models_body() -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "simprovider"}],
    }
