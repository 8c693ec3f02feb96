"""OpenAI ``chat.completion.chunk`` dicts, and re-encoding them as SSE.

``ChunkBuilder`` makes the chunks a translator returns, all sharing one
id, creation time and model, shaped exactly like OpenAI's (one choice per
chunk, at index 0 unless the request asked for several, ``logprobs`` and ``finish_reason`` null until the end, a
usage-only chunk with ``choices: []`` last). ``system_fingerprint`` is left
out: no translated provider has an equivalent, and OpenAI's own types make
it optional. ``TranslatedStream`` wraps a translator for the
caller: provider SSE events in, OpenAI SSE events out, ``[DONE]`` last, so
the rest of the stream path (``StreamWatch``, the client) sees an OpenAI
stream whatever the provider. ``MessageAssembler`` folds chunks back into
the assistant message they spell (for tests, and for continuing a turn
from its partial text).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from router.providers.base import StreamTranslator
from router.sse import DONE_DATA, DONE_EVENT, SSEEvent

__all__ = ["ChunkBuilder", "MessageAssembler", "TranslatedStream", "chunk_event", "completion_choice", "usage_dict"]


def usage_dict(
    prompt_tokens: int,
    completion_tokens: int,
    total_tokens: int | None = None,
    *,
    cached_tokens: int | None = None,
    reasoning_tokens: int | None = None,
) -> dict[str, Any]:
    """OpenAI's usage object; cached and reasoning counts only when known."""
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens if total_tokens is None else total_tokens,
    }
    if cached_tokens:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    if reasoning_tokens:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    return usage


def completion_choice(message: dict[str, Any], finish_reason: str, index: int = 0) -> dict[str, Any]:
    """A choice of a translated ``chat.completion``, with the null fields
    OpenAI always sends (``refusal``; ``logprobs``, which a translated
    provider never returns: ``logprobs`` requests are refused)."""
    return {"index": index, "message": {**message, "refusal": None}, "logprobs": None, "finish_reason": finish_reason}


class ChunkBuilder:
    """The chunks of one streamed completion. ``id`` and ``model`` may be
    replaced once the provider names them (e.g. Anthropic's ``message_start``)."""

    __slots__ = ("id", "created", "model")

    def __init__(self, completion_id: str, created: int, model: str):
        self.id = completion_id
        self.created = created
        self.model = model

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None, choice: int = 0) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": choice, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }

    def role(self, choice: int = 0) -> dict[str, Any]:
        return self._chunk({"role": "assistant", "content": ""}, choice=choice)

    def content(self, text: str, choice: int = 0) -> dict[str, Any]:
        return self._chunk({"content": text}, choice=choice)

    def tool_call(
        self, index: int, *, call_id: str | None = None, name: str | None = None, arguments: str = "", choice: int = 0
    ) -> dict[str, Any]:
        """A tool-call delta: the first for a call carries ``id``, ``type`` and
        the function name; later ones only argument fragments."""
        call: dict[str, Any] = {"index": index}
        if call_id is not None:
            call["id"] = call_id
            call["type"] = "function"
        function: dict[str, Any] = {"arguments": arguments}
        if name is not None:
            function = {"name": name, "arguments": arguments}
        call["function"] = function
        return self._chunk({"tool_calls": [call]}, choice=choice)

    def finish(self, reason: str, choice: int = 0) -> dict[str, Any]:
        return self._chunk({}, reason, choice)

    def usage(self, usage: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage,
        }


def chunk_event(chunk: dict[str, Any]) -> SSEEvent:
    """One chunk as the SSE event OpenAI would have sent (compact JSON)."""
    data = json.dumps(chunk, separators=(",", ":")).encode()
    return SSEEvent(b"data: " + data + b"\n\n", data)


DONE = SSEEvent(DONE_EVENT, DONE_DATA)


class TranslatedStream:
    """Provider SSE events in, OpenAI SSE events out.

    ``feed`` returns the OpenAI events for a batch of provider events;
    ``close`` is called when the upstream body ends: it returns the trailing
    chunks and ``[DONE]``, or raises ``UpstreamDisconnected`` if the provider
    never finished (the translator decides).
    """

    __slots__ = ("translator",)

    def __init__(self, translator: StreamTranslator):
        self.translator = translator

    def feed(self, events: Iterable[SSEEvent]) -> list[SSEEvent]:
        feed = self.translator.feed
        return [chunk_event(chunk) for event in events for chunk in feed(event)]

    def close(self) -> list[SSEEvent]:
        return [*(chunk_event(chunk) for chunk in self.translator.finish()), DONE]


class MessageAssembler:
    """Folds ``chat.completion.chunk`` dicts into the message they spell:
    ``content`` (concatenated), ``tool_calls`` (by index: id, name and the
    concatenated argument fragments), ``finish_reason`` and ``usage``."""

    __slots__ = ("_content", "_tool_calls", "finish_reason", "usage")

    def __init__(self) -> None:
        self._content: list[str] = []
        self._tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None

    def add(self, chunk: dict[str, Any]) -> None:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self._content.append(delta["content"])
            for call in delta.get("tool_calls") or ():
                self._add_call(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def _add_call(self, call: dict[str, Any]) -> None:
        known = self._tool_calls.setdefault(
            call["index"], {"id": None, "type": "function", "function": {"name": None, "arguments": ""}}
        )
        if call.get("id"):
            known["id"] = call["id"]
        function = call.get("function") or {}
        if function.get("name"):
            known["function"]["name"] = function["name"]
        known["function"]["arguments"] += function.get("arguments") or ""

    @property
    def content(self) -> str:
        return "".join(self._content)

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return [self._tool_calls[i] for i in sorted(self._tool_calls)]
