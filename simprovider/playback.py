"""Playing one simulated completion out over ASGI, on the behaviour's clock.

Each class here is an ASGI callable returned by the chat completions
endpoint. They write to `send` directly rather than through Starlette's
`StreamingResponse` because the failure modes need control it does not
give: holding back even the headers (`hang`), cutting the TCP connection
mid-body (`drop_after`), and waiting for the client to leave (`stall_after`).

Tokens are scheduled at absolute times from the request's arrival
(`ttft + (i - 1) * interval`), so send latency does not accumulate as drift.
The TTFT is drawn once per request, when its `Plan` is made (a behaviour
with a TTFT tail gives some requests `ttft_tail_ms`).
The script is the same in every wire format; the plan's `WireFormat`
encodes it (see `formats`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from starlette.types import Receive, Scope, Send

from .behavior import Behavior
from .formats import OPENAI, WireFormat
from .request import CompletionRequest, Reply, token_text

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
        wire: The format to answer in. Default OpenAI.
        others_in_flight: Requests already in flight at the profile when
            this one arrived (``Behavior.ttft_per_in_flight``). Default 0.
        ttft_ms: This request's time to first token, in milliseconds, drawn
            from the behaviour when the plan is made (not an argument).
    """

    request: CompletionRequest
    behavior: Behavior
    extra_headers: list[tuple[bytes, bytes]]
    arrived_s: float
    wire: WireFormat = OPENAI
    others_in_flight: int = 0
    ttft_ms: float = field(init=False)

    def __post_init__(self) -> None:
        # One draw per request, whichever completion class plays it; a
        # prompt found in the profile's prefix cache starts sooner.
        ttft_ms = self.behavior.first_token_ms()
        if self.request.cached_tokens:
            ttft_ms *= self.behavior.warm_ttft_factor
        ttft_ms *= 1 + self.behavior.ttft_per_in_flight * self.others_in_flight
        object.__setattr__(self, "ttft_ms", ttft_ms)

    @property
    def n_tokens(self) -> int:
        """Words a successful text reply carries: the `tokens` words not yet
        said (all of them unless continuing), at most `max_tokens`."""
        limit = self.request.max_tokens
        tokens = max(0, self.behavior.tokens - (self.request.first_word - 1))
        return tokens if limit is None else min(tokens, limit)

    @property
    def tool_name(self) -> str | None:
        """The tool to call instead of answering with text, or None."""
        request = self.request
        wanted = request.asks_for_tool or self.behavior.tool_call
        return request.tool_name if wanted and not request.after_tool_result else None

    @property
    def reply(self) -> Reply:
        tool = self.tool_name
        return Reply(self.request.first_word, 0 if tool else self.n_tokens, tool)

    @property
    def n_units(self) -> int:
        """Scheduled sends after the start: one per word, or one tool call."""
        return 1 if self.tool_name else self.n_tokens

    @property
    def tokens_before_failure(self) -> int | None:
        """Good tokens sent before a mid-response failure; None if none is due."""
        if self.behavior.failure in ("drop_after", "malformed", "stall_after"):
            return min(self.behavior.drop_after_tokens, self.n_units)
        return None

    def token_due_s(self, index: int) -> float:
        """Loop time token `index` (1-based) is due; index 0 is the TTFT."""
        offset_ms = self.ttft_ms + max(0, index - 1) * self.behavior.token_interval_ms
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
    """Server-sent events exactly as the provider streams them, with failures injected.

    Headers go out at once; the start events (OpenAI's role chunk,
    Anthropic's `message_start`) and the first content token go out after
    `ttft_ms`, so a client's time to first body byte is the TTFT. Every
    event is its own `send`, so uvicorn writes each one immediately.
    """

    def __init__(self, plan: Plan) -> None:
        self._plan = plan
        self._events = plan.wire.stream(plan.request)

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
        # A real provider stops working on a request whose client has gone,
        # even before its first token: watch for that during the wait.
        await asyncio.wait([disconnected], timeout=max(0.0, plan.token_due_s(0) - asyncio.get_running_loop().time()))
        if disconnected.done():
            return
        for event in self._events.start():
            await _body(send, event)
        stop_at = plan.tokens_before_failure
        last = plan.n_units if stop_at is None else stop_at
        tool, first_word = plan.tool_name, plan.request.first_word
        for index in range(1, last + 1):
            await _sleep_until(plan.token_due_s(index))
            if disconnected.done():
                return  # nobody is listening; stop spending CPU on this stream
            if tool:
                for event in self._events.tool_call(tool):
                    await _body(send, event)
            else:
                event = self._events.text(token_text(first_word + index - 1))
                if index == stop_at and plan.behavior.failure == "malformed":
                    # The garbage arrives glued to the last good word, in one
                    # write: a relay must forward that word and still stop.
                    event += self._events.malformed
                await _body(send, event)
        if stop_at is not None:
            await self._fail(send, disconnected, malformed_sent=bool(stop_at) and not tool)
            return
        await self._finish(send)

    async def _fail(self, send: Send, disconnected: asyncio.Future[None], *, malformed_sent: bool = False) -> None:
        failure = self._plan.behavior.failure
        if failure == "drop_after":
            raise ConnectionDrop(f"simulated drop after {self._plan.tokens_before_failure} tokens")
        if failure == "stall_after":
            await disconnected
            return
        if not malformed_sent:
            await _body(send, self._events.malformed)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _finish(self, send: Send) -> None:
        reply = self._plan.reply
        events = [e for e in self._events.finish("tool_calls" if reply.tool_name else "stop", reply.completion_tokens) if e]
        for event in events[:-1]:
            await _body(send, event)
        await send({"type": "http.response.body", "body": events[-1], "more_body": False})


class BufferedCompletion:
    """A non-streamed reply in the plan's format, sent when the last token would be.

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
        await _sleep_until(plan.token_due_s(plan.n_units if stop_at is None else stop_at))
        body = json.dumps(plan.wire.body(plan.request, plan.reply), separators=(",", ":")).encode()
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
