"""Watching an OpenAI chat-completion stream as it passes through.

``StreamWatch`` reads each SSE event once, to learn what the turn log and
the tracker need (first content token, usage, finish, [DONE]) and to catch
malformed events; the bytes themselves are forwarded unchanged. The one
event it asks to drop is the usage-only chunk the router requested on the
client's behalf when the client did not ask for usage. With a
``usage_note``, the usage-only chunk the client asked for gains the router's
``nemo`` object (the endpoint and the turn's cost, ``router.serving_note``):
the watch leaves that chunk, changed, in ``noted_chunk`` for the relay to
encode instead of its raw bytes.

A turn asking for several choices (``n > 1``) streams each choice's chunks
under its ``index``: the watch keeps the first choice's text apart (the
text a continuation would splice onto) and the others' beside it, so the
turn's text (``reply_text``, for a cost estimate) covers every choice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from router.errors import UpstreamProtocolError
from router.providers.base import token_count
from router.serving_note import NOTE_KEY
from router.sse import DONE_DATA, SSEEvent

__all__ = ["StreamWatch", "Usage"]


@dataclass(slots=True, frozen=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    # Prompt tokens served from the provider's prompt cache
    # (``prompt_tokens_details.cached_tokens``); None when not reported.
    cached_tokens: int | None = None

    @classmethod
    def from_dict(cls, usage: dict | None) -> "Usage | None":
        """Usage as the upstream reported it; a count that is not a believable
        integer is treated as missing (usage is metadata: a turn that produced
        its answer does not fail for it)."""
        if not isinstance(usage, dict):
            return None
        details = usage.get("prompt_tokens_details")
        cached = token_count(details.get("cached_tokens")) if isinstance(details, dict) else None
        return cls(token_count(usage.get("prompt_tokens")), token_count(usage.get("completion_tokens")),
                   token_count(usage.get("total_tokens")), cached)


class StreamWatch:
    """Per-turn stream state. ``accept(event)`` returns whether to forward it.

    Raises ``UpstreamProtocolError`` for an event whose data is not a JSON
    object, or an upstream error object sent mid-stream.
    """

    __slots__ = (
        "endpoint", "forward_usage", "saw_content", "saw_tool_calls", "done", "usage",
        "finish_reason", "chunks", "model", "chunk_id", "text_parts", "other_choices",
        "usage_note", "noted_chunk",
    )

    def __init__(self, endpoint: str, *, forward_usage: bool, usage_note: Callable[[Usage | None], dict] | None = None):
        self.endpoint = endpoint
        self.forward_usage = forward_usage
        # Usage -> the ``nemo`` object the forwarded usage-only chunk carries.
        self.usage_note = usage_note
        self.noted_chunk: dict | None = None  # that chunk, changed, until the relay takes it
        self.saw_content = False
        self.done = False
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.saw_tool_calls = False
        self.chunks = 0
        self.model: str | None = None
        self.chunk_id: str | None = None
        # The content sent so far, kept so a mid-stream failure can be
        # continued elsewhere (one list append per content chunk).
        self.text_parts: list[str] = []
        # Choice index -> its content so far, for the choices after the first.
        self.other_choices: dict[int, list[str]] = {}

    @property
    def text(self) -> str:
        """The first choice's content so far."""
        return "".join(self.text_parts)

    @property
    def reply_text(self) -> str:
        """Every choice's content, in index order, one per line."""
        others = ["".join(self.other_choices[i]) for i in sorted(self.other_choices)]
        return "\n".join([self.text, *others]) if others else self.text

    def accept(self, event: SSEEvent) -> bool:
        """Read one raw OpenAI event; ``[DONE]`` is accepted and ends the stream."""
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
        return self.accept_chunk(chunk)

    def accept_chunk(self, chunk: dict) -> bool:
        """Read one ``chat.completion.chunk`` (parsed or translated)."""
        if "error" in chunk:
            raise UpstreamProtocolError("upstream sent an error event mid-stream", endpoint=self.endpoint)
        self.chunks += 1
        if self.model is None:
            self.model = chunk.get("model")
            self.chunk_id = chunk.get("id")
        choices = chunk.get("choices")
        usage = chunk.get("usage")
        if usage:
            self.usage = Usage.from_dict(usage)
        if choices:
            # A few type checks per event: a reply of the right shape with the
            # wrong types is the endpoint's protocol error, not a crash.
            if type(choices) is not list or type(choice := choices[0]) is not dict:
                raise UpstreamProtocolError("upstream stream event has malformed choices", endpoint=self.endpoint)
            if len(choices) > 1 or choice.get("index"):
                self._accept_choices(choices)  # n > 1: not the hot path
                return True
            delta = choice.get("delta") or {}
            if type(delta) is not dict:
                raise UpstreamProtocolError("upstream stream event has a malformed delta", endpoint=self.endpoint)
            content = delta.get("content")
            if content:
                if type(content) is not str:
                    raise UpstreamProtocolError("upstream stream event has non-text content", endpoint=self.endpoint)
                self.text_parts.append(content)
                self.saw_content = True
            if delta.get("tool_calls"):
                self.saw_content = self.saw_tool_calls = True
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            return True
        # A chunk with no choices is the usage-only chunk.
        if usage and self.forward_usage and self.usage_note is not None:
            chunk[NOTE_KEY] = self.usage_note(self.usage)
            self.noted_chunk = chunk
        return self.forward_usage

    def _accept_choices(self, choices: list) -> None:
        """A chunk of a several-choice turn: each choice read under its index."""
        for choice in choices:
            index = choice.get("index") if type(choice) is dict else None
            if type(index) is not int or index < 0:
                raise UpstreamProtocolError("upstream stream event has malformed choices", endpoint=self.endpoint)
            delta = choice.get("delta") or {}
            if type(delta) is not dict:
                raise UpstreamProtocolError("upstream stream event has a malformed delta", endpoint=self.endpoint)
            parts = self.other_choices.setdefault(index, []) if index else self.text_parts
            content = delta.get("content")
            if content:
                if type(content) is not str:
                    raise UpstreamProtocolError("upstream stream event has non-text content", endpoint=self.endpoint)
                parts.append(content)
                self.saw_content = True
            if delta.get("tool_calls"):
                self.saw_content = self.saw_tool_calls = True
            if choice.get("finish_reason") and (index == 0 or self.finish_reason is None):
                self.finish_reason = choice["finish_reason"]
