"""The three wire formats the simulator speaks, behind one interface.

The playback (`playback.py`) plays the same script in every format: after
the TTFT the stream's `start()` events, then one `text()` event per word
(or the `tool_call()` events), then the `finish()` events, with failures
injected in between. A `WireFormat` bundles what differs:

    stream    CompletionRequest -> a StreamEncoder for one stream
    body      (request, reply) -> the whole non-streamed reply
    failure   (status, retry_after_s) -> the error body of an `http_*` failure
    invalid   message -> the error body of a 400
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from . import anthropic_wire, gemini_wire, wire
from .request import CompletionRequest, Reply

__all__ = ["ANTHROPIC", "GEMINI", "OPENAI", "StreamEncoder", "WireFormat"]


class StreamEncoder(Protocol):
    """The SSE events of one stream, as bytes ready to send.

    `finish` takes the OpenAI finish reason (`stop`, `tool_calls`) and the
    completion token count, and returns every event that ends the stream.
    `malformed` is an event whose data is cut-off JSON.
    """

    malformed: bytes

    def start(self) -> list[bytes]: ...

    def text(self, delta: str) -> bytes: ...

    def tool_call(self, name: str) -> list[bytes]: ...

    def finish(self, reason: str, completion_tokens: int) -> list[bytes]: ...


@dataclass(frozen=True)
class WireFormat:
    name: str
    stream: Callable[[CompletionRequest], StreamEncoder]
    body: Callable[[CompletionRequest, Reply], dict[str, Any]]
    failure: Callable[[int, float | None], dict[str, Any]]
    invalid: Callable[[str], dict[str, Any]]


def _openai_body(request: CompletionRequest, reply: Reply) -> dict[str, Any]:
    return wire.reply_body(request, reply, wire.new_completion_id(), int(time.time()))


OPENAI = WireFormat("openai", wire.OpenAIStream, _openai_body, wire.failure_body, wire.invalid_body)
ANTHROPIC = WireFormat(
    "anthropic",
    anthropic_wire.AnthropicStream,
    anthropic_wire.message_body,
    anthropic_wire.failure_body,
    anthropic_wire.invalid_body,
)
GEMINI = WireFormat(
    "gemini", gemini_wire.GeminiStream, gemini_wire.response_body, gemini_wire.failure_body, gemini_wire.invalid_body
)
