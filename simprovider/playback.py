"""Playing one simulated completion out over ASGI, on the behaviour's clock.

Each class here is an ASGI callable returned by the chat completions
endpoint. They write to `send` directly rather than through Starlette's
`StreamingResponse` because the failure modes need control it does not
give: holding back even the headers (`hang`), cutting the TCP connection
mid-body (`drop_after`), and waiting for the client to leave (`stall_after`).

Tokens are scheduled at absolute times from the request's arrival
(`ttft + (i - 1) * interval`), so send latency does not accumulate as drift.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from starlette.types import Receive, Scope, Send

from .behavior import Behavior
from .wire import (
    DONE_EVENT,
    MALFORMED_EVENT,
    ChunkFactory,
    CompletionRequest,
    completion_body,
    new_completion_id,
    token_text,
)

__all__ = ["BufferedCompletion", "ConnectionDrop", "Plan", "StreamedCompletion"]

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]
_JSON_CONTENT_TYPE = (b"content-type", b"application/json")


class ConnectionDrop(Exception):
    """Raised mid-response to make the server close the TCP connection.

    Raising after the response has started is the only way an ASGI app can
    make uvicorn close the socket without a well-formed end of body; the
    runner filters this exception out of uvicorn's error log.
    """


@dataclass(frozen=True)
class Plan:
    """What to play for one request.

    Attributes:
        request: The parsed request.
        behavior: The behaviour in force for this request.
        extra_headers: Response headers added to every reply (e.g. `x-sim-profile`).
        arrived_s: Event-loop time (seconds) the request arrived; the
            schedule counts from here.
    """

    request: CompletionRequest
    behavior: Behavior
    extra_headers: list[tuple[bytes, bytes]]
    arrived_s: float

    @property
    def n_tokens(self) -> int:
        """Content tokens a successful reply carries: min(tokens, max_tokens)."""
        limit = self.request.max_tokens
        tokens = self.behavior.tokens
        return tokens if limit is None else min(tokens, limit)

    @property
    def tokens_before_failure(self) -> int | None:
        """Good tokens sent before a mid-response failure; None if none is due."""
        if self.behavior.failure in ("drop_after", "malformed", "stall_after"):
            return min(self.behavior.drop_after_tokens, self.n_tokens)
        return None

    def token_due_s(self, index: int) -> float:
        """Loop time token `index` (1-based) is due; index 0 is the TTFT."""
        b = self.behavior
        offset_ms = b.ttft_ms + max(0, index - 1) * b.token_interval_ms
        return self.arrived_s + offset_ms / 1000.0


async def _wait_for_disconnect(receive: Receive) -> None:
    # Once the body has been read, uvicorn's receive() only returns when the
    # client disconnects (or our response completes).
    while (await receive())["type"] != "http.disconnect":
        pass


async def _sleep_until(due_s: float) -> None:
    delay_s = due_s - asyncio.get_running_loop().time()
    if delay_s > 0:
        await asyncio.sleep(delay_s)


class StreamedCompletion:
    """Server-sent events exactly as OpenAI streams them, with failures injected.

    Headers go out at once; the role chunk and the first content token go
    out after `ttft_ms`, so a client's time to first body byte is the TTFT.
    Every event is its own `send`, so uvicorn writes each one immediately.
    """

    def __init__(self, plan: Plan) -> None:
        self._plan = plan
        self._chunks = ChunkFactory(
            new_completion_id(), int(time.time()), plan.request.model, plan.request.include_usage
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        disconnected = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            await self._play(send, disconnected)
        finally:
            disconnected.cancel()

    async def _play(self, send: Send, disconnected: asyncio.Future[None]) -> None:
        plan = self._plan
        if plan.behavior.failure == "hang":
            await disconnected
            return
        await send(
            {"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS + plan.extra_headers}
        )
        await _sleep_until(plan.token_due_s(0))
        await _body(send, self._chunks.role())
        stop_at = plan.tokens_before_failure
        last = plan.n_tokens if stop_at is None else stop_at
        for index in range(1, last + 1):
            await _sleep_until(plan.token_due_s(index))
            if disconnected.done():
                return  # nobody is listening; stop spending CPU on this stream
            await _body(send, self._chunks.content(token_text(index)))
        if stop_at is not None:
            await self._fail(send, disconnected)
            return
        await self._finish(send)

    async def _fail(self, send: Send, disconnected: asyncio.Future[None]) -> None:
        failure = self._plan.behavior.failure
        if failure == "drop_after":
            raise ConnectionDrop(f"simulated drop after {self._plan.tokens_before_failure} tokens")
        if failure == "stall_after":
            await disconnected
            return
        await _body(send, MALFORMED_EVENT)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _finish(self, send: Send) -> None:
        plan = self._plan
        await _body(send, self._chunks.finish())
        if plan.request.include_usage:
            await _body(send, self._chunks.usage(plan.request.prompt_tokens, plan.n_tokens))
        await send({"type": "http.response.body", "body": DONE_EVENT, "more_body": False})


class BufferedCompletion:
    """A non-streamed `chat.completion`, sent when the last token would be.

    Failures: `hang` and `stall_after` send nothing until the client leaves;
    `drop_after` announces the full Content-Length, sends half the body and
    cuts the connection; `malformed` sends a truncated JSON body.
    """

    def __init__(self, plan: Plan) -> None:
        self._plan = plan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        plan = self._plan
        failure = plan.behavior.failure
        if failure in ("hang", "stall_after"):
            # A stall before any byte of a buffered body looks like a hang.
            await _wait_for_disconnect(receive)
            return
        stop_at = plan.tokens_before_failure
        await _sleep_until(plan.token_due_s(plan.n_tokens if stop_at is None else stop_at))
        body = json.dumps(
            completion_body(
                new_completion_id(),
                int(time.time()),
                plan.request.model,
                plan.request.prompt_tokens,
                plan.n_tokens,
            ),
            separators=(",", ":"),
        ).encode()
        if failure == "malformed":
            body = body[: len(body) // 2]
        headers = [_JSON_CONTENT_TYPE, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers + plan.extra_headers})
        if failure == "drop_after":
            await _body(send, body[: len(body) // 2])
            raise ConnectionDrop("simulated drop in the middle of a buffered body")
        await send({"type": "http.response.body", "body": body, "more_body": False})


async def _body(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})
