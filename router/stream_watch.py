"""Watching an OpenAI chat-completion stream as it passes through.

``StreamWatch`` reads each SSE event once, to learn what the turn log and
the tracker need (first content token, usage, finish, [DONE]) and to catch
malformed events; the bytes themselves are forwarded unchanged. The one
event it asks to drop is the usage-only chunk the router requested on the
client's behalf when the client did not ask for usage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from router.errors import UpstreamProtocolError
from router.sse import DONE_DATA, SSEEvent

__all__ = ["StreamWatch", "Usage"]


@dataclass(slots=True, frozen=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None

    @classmethod
    def from_dict(cls, usage: dict | None) -> "Usage | None":
        if not isinstance(usage, dict):
            return None
        return cls(usage.get("prompt_tokens"), usage.get("completion_tokens"), usage.get("total_tokens"))


class StreamWatch:
    """Per-turn stream state. ``accept(event)`` returns whether to forward it.

    Raises ``UpstreamProtocolError`` for an event whose data is not a JSON
    object, or an upstream error object sent mid-stream.
    """

    __slots__ = ("endpoint", "forward_usage", "saw_content", "done", "usage", "finish_reason", "chunks", "model")

    def __init__(self, endpoint: str, *, forward_usage: bool):
        self.endpoint = endpoint
        self.forward_usage = forward_usage
        self.saw_content = False
        self.done = False
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.chunks = 0
        self.model: str | None = None

    def accept(self, event: SSEEvent) -> bool:
        data = event.data
        if data is None:
            return False  # comments / keep-alives: nothing for the client
        if data == DONE_DATA:
            self.done = True
            return True
        try:
            chunk = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UpstreamProtocolError("upstream sent a malformed stream event", endpoint=self.endpoint) from exc
        if not isinstance(chunk, dict):
            raise UpstreamProtocolError("upstream stream event is not an object", endpoint=self.endpoint)
        if "error" in chunk:
            raise UpstreamProtocolError("upstream sent an error event mid-stream", endpoint=self.endpoint)
        self.chunks += 1
        if self.model is None:
            self.model = chunk.get("model")
        choices = chunk.get("choices")
        usage = chunk.get("usage")
        if usage:
            self.usage = Usage.from_dict(usage)
        if choices:
            choice = choices[0]
            delta = choice.get("delta") or {}
            if not self.saw_content and (delta.get("content") or delta.get("tool_calls")):
                self.saw_content = True
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            return True
        # A chunk with no choices is the usage-only chunk.
        return self.forward_usage
