"""An in-memory ``UpstreamTransport`` for tests, like ``httpx.MockTransport``:
a function of each request decides the reply, and nothing touches a socket.

A ``Reply`` is scripted as a status and a list of pieces: ``bytes`` is one
network read, a ``float`` is a pause of that many seconds, an
``UpstreamError`` is raised by the read that reaches it. ``hang=True``
never answers at all (the turn's deadlines or a cancel end it). The
transport remembers every request it was sent and how many responses are
still open, so a test can check that a cancelled or failed attempt closed
its upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from router.config import EndpointConfig, TimeoutConfig
from router.providers import ProviderCodec
from router.sse import DONE_EVENT, encode_json

__all__ = ["MemoryTransport", "Reply", "SentRequest", "openai_sse"]

Piece = bytes | float | BaseException


@dataclass(frozen=True)
class Reply:
    status: int = 200
    pieces: Sequence[Piece] = ()
    retry_after: str | None = None
    hang: bool = False


@dataclass(frozen=True)
class SentRequest:
    endpoint: str
    body: dict
    stream: bool


@dataclass
class _Response:
    reply: Reply
    finished: bool = False


@dataclass
class MemoryTransport:
    """``handler(request) -> Reply`` answers each request."""

    handler: Callable[[SentRequest], Reply]
    sent: list[SentRequest] = field(default_factory=list)
    open_responses: int = 0

    @contextlib.asynccontextmanager
    async def open(
        self, endpoint: EndpointConfig, codec: ProviderCodec, body: bytes, timeouts: TimeoutConfig, *, stream: bool
    ) -> AsyncIterator[_Response]:
        request = SentRequest(endpoint.name, json.loads(body), stream)
        self.sent.append(request)
        reply = self.handler(request)
        self.open_responses += 1
        try:
            if reply.hang:
                await asyncio.Event().wait()
            if reply.status >= 400:
                raise codec.error_from_status(reply.status, _joined(reply.pieces), reply.retry_after, endpoint=endpoint.name)
            yield _Response(reply)
        finally:
            self.open_responses -= 1

    async def chunks(self, response: _Response, endpoint: str) -> AsyncIterator[bytes]:
        for piece in response.reply.pieces:
            if isinstance(piece, float):
                await asyncio.sleep(piece)
            elif isinstance(piece, BaseException):
                raise piece
            else:
                yield piece
        response.finished = True

    async def read(self, response: _Response, endpoint: str) -> bytes:
        return b"".join([chunk async for chunk in self.chunks(response, endpoint)])


def openai_sse(words: Sequence[str], *, model: str = "sim-model", chunk_id: str = "chatcmpl-mem", usage: bool = True) -> list[bytes]:
    """An OpenAI chat-completion stream of ``words``, one event per piece:
    the role preamble, one chunk per word (space-separated), the finish,
    the usage-only chunk, ``[DONE]``."""

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        return encode_json({"id": chunk_id, "object": "chat.completion.chunk", "created": 0, "model": model,
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": word if i == 0 else " " + word}) for i, word in enumerate(words)]
    events.append(chunk({}, "stop"))
    if usage:
        events.append(encode_json({"id": chunk_id, "object": "chat.completion.chunk", "created": 0, "model": model,
                                   "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": len(words),
                                                            "total_tokens": 3 + len(words)}}))
    events.append(DONE_EVENT)
    return events


def _joined(pieces: Sequence[Piece]) -> bytes:
    return b"".join(p for p in pieces if isinstance(p, bytes))
