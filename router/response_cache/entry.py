"""A cached turn, how one is made, and how it is replayed.

A ``CachedTurn`` keeps the turn both ways, as compact JSON: the OpenAI ``chat.completion.chunk``
dicts it streamed (without the usage-only chunk) and the assembled
``chat.completion``. A streaming hit replays the chunks as SSE
(``replay_sse``), a non-streaming hit returns the completion
(``replay_completion``), whichever way the turn was first served.

What is cached (the rest is served fresh every time):

- turns that completed: the stream reached ``[DONE]`` with no error event,
  or the completion came back 2xx;
- with one choice whose ``finish_reason`` is ``stop`` or ``length``
  (``length`` is deterministic given ``max_tokens``, which is in the key);
- and no tool calls: a tool call asks the client to act on the world, and
  replaying it would reuse its call id; ``content_filter`` and other endings
  are not cached either.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from router.providers.chunks import ChunkBuilder, MessageAssembler
from router.serving_note import NOTE_KEY
from router.sse import DONE_DATA, DONE_EVENT, SSEDecoder, encode_json

__all__ = [
    "CACHEABLE_FINISH_REASONS",
    "CachedTurn",
    "entry_from_chunks",
    "entry_from_completion",
    "TurnRecorder",
    "replay_sse",
    "replay_completion",
]

CACHEABLE_FINISH_REASONS = frozenset({"stop", "length"})


@dataclass(frozen=True, slots=True, eq=False)
class CachedTurn:
    """One completed turn, held as compact JSON so that ``size_bytes`` (what
    the cache's byte bound counts) is close to the memory it takes and
    crossing to and from the cache actor is one copy of bytes.

    ``chunks_json`` is the JSON array of the turn's chunks, ``completion_json``
    its ``chat.completion``; ``usage`` is the provider's usage object (None
    if it sent none); ``endpoint`` and ``provider`` name what first served it.
    """

    chunks_json: bytes
    completion_json: bytes
    usage: dict[str, Any] | None
    endpoint: str | None
    provider: str | None

    @property
    def size_bytes(self) -> int:
        return len(self.chunks_json) + len(self.completion_json)

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return json.loads(self.chunks_json)

    @property
    def completion(self) -> dict[str, Any]:
        return json.loads(self.completion_json)

    @property
    def model(self) -> str | None:
        return self.completion.get("model")

    @property
    def content(self) -> str:
        return self.completion["choices"][0]["message"].get("content") or ""

    @property
    def finish_reason(self) -> str | None:
        return self.completion["choices"][0].get("finish_reason")


def entry_from_chunks(
    chunks: Iterable[Mapping[str, Any]],
    *,
    usage: Mapping[str, Any] | None = None,
    endpoint: str | None = None,
    provider: str | None = None,
) -> CachedTurn | None:
    """The entry for a streamed turn's chunks, or None if it is not cacheable.

    A usage-only chunk among ``chunks`` supplies ``usage`` unless given.
    """
    kept: list[dict[str, Any]] = []
    for chunk in chunks:
        if chunk.get("usage") and not chunk.get("choices"):
            usage = usage or chunk["usage"]
            continue
        if "error" in chunk or any(c.get("index", 0) != 0 for c in chunk.get("choices") or ()):
            return None
        kept.append({k: v for k, v in chunk.items() if k != "usage"})
    if not kept:
        return None
    assembler = MessageAssembler()
    for chunk in kept:
        assembler.add(chunk)
    if assembler.tool_calls or assembler.finish_reason not in CACHEABLE_FINISH_REASONS:
        return None
    first = kept[0]
    message = {"role": "assistant", "content": assembler.content, "refusal": None}
    completion: dict[str, Any] = {
        "id": first.get("id"),
        "object": "chat.completion",
        "created": first.get("created"),
        "model": first.get("model"),
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": assembler.finish_reason}],
    }
    if isinstance(usage, Mapping) and usage:
        completion["usage"] = dict(usage)
    return _entry(kept, completion, usage, endpoint, provider)


def entry_from_completion(
    completion: Mapping[str, Any], *, endpoint: str | None = None, provider: str | None = None
) -> CachedTurn | None:
    """The entry for a non-streaming turn's ``chat.completion``, with the
    chunks a stream of it would have had; None if it is not cacheable."""
    choices = completion.get("choices") or []
    if len(choices) != 1 or choices[0].get("finish_reason") not in CACHEABLE_FINISH_REASONS:
        return None
    message = choices[0].get("message") or {}
    if message.get("tool_calls") or message.get("function_call"):
        return None
    builder = ChunkBuilder(str(completion.get("id")), int(completion.get("created") or 0), str(completion.get("model")))
    chunks = [builder.role()]
    if message.get("content"):
        chunks.append(builder.content(message["content"]))
    chunks.append(builder.finish(choices[0]["finish_reason"]))
    return _entry(chunks, dict(completion), completion.get("usage"), endpoint, provider)


def _entry(chunks, completion, usage, endpoint, provider) -> CachedTurn:
    return CachedTurn(_compact(chunks), _compact(completion), dict(usage) if usage else None, endpoint, provider)


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class TurnRecorder:
    """Keeps the SSE bytes of one streamed turn as they are forwarded (one
    list append per piece, nothing parsed on the hot path) and builds the
    entry once the turn is over. Past ``max_bytes`` it stops keeping them
    and the turn is not cached."""

    __slots__ = ("_pieces", "_size", "_max_bytes")

    def __init__(self, max_bytes: int):
        self._pieces: list[bytes] = []
        self._size = 0
        self._max_bytes = max_bytes

    def feed(self, raw: bytes) -> None:
        if self._size > self._max_bytes:
            return
        self._size += len(raw)
        if self._size > self._max_bytes:
            self._pieces.clear()
        else:
            self._pieces.append(raw)

    def finish(
        self, *, usage: Mapping[str, Any] | None = None, endpoint: str | None = None, provider: str | None = None
    ) -> CachedTurn | None:
        """The entry, or None: too large, no ``[DONE]``, malformed, an error
        event, or not cacheable (see the module docstring)."""
        if self._size > self._max_bytes:
            return None
        chunks: list[dict[str, Any]] = []
        done = False
        for event in SSEDecoder().feed(b"".join(self._pieces)):
            if event.data is None:
                continue
            if done:
                return None
            if event.data == DONE_DATA:
                done = True
                continue
            try:
                chunk = json.loads(event.data)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return None
            if not isinstance(chunk, dict):
                return None
            chunks.append(chunk)
        if not done:
            return None
        return entry_from_chunks(chunks, usage=usage, endpoint=endpoint, provider=provider)


def replay_sse(
    entry: CachedTurn, include_usage: bool, *, completion_id: str | None = None, created: int | None = None
) -> list[bytes]:
    """The turn as OpenAI would stream it: one ``data:`` event per chunk, the
    usage-only chunk when ``include_usage`` (and usage is known; with the
    router's ``nemo`` note, cost 0), then ``[DONE]``. ``completion_id`` /
    ``created`` replace the stored ones."""
    overrides = _overrides(completion_id, created)
    chunks = entry.chunks
    events = []
    for chunk in chunks:
        chunk = {**chunk, **overrides}
        if include_usage:
            chunk["usage"] = None  # as OpenAI sends on every chunk before the last
        events.append(encode_json(chunk))
    if include_usage and entry.usage is not None:
        first = chunks[0]
        usage_chunk = {k: first[k] for k in ("id", "object", "created", "model") if k in first}
        note = {NOTE_KEY: {"endpoint": entry.endpoint, "cost_usd": 0.0}}  # a hit costs nothing (router.serving_note)
        events.append(encode_json({**usage_chunk, **overrides, "choices": [], "usage": entry.usage, **note}))
    events.append(DONE_EVENT)
    return events


def replay_completion(entry: CachedTurn, *, completion_id: str | None = None, created: int | None = None) -> dict[str, Any]:
    """The turn as a ``chat.completion`` dict (a fresh copy, safe to change)."""
    return {**entry.completion, **_overrides(completion_id, created)}


def _overrides(completion_id: str | None, created: int | None) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if completion_id is not None:
        overrides["id"] = completion_id
    if created is not None:
        overrides["created"] = created
    return overrides
