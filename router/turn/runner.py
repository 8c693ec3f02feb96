"""Serving one turn from a plan: try its endpoints in order until one starts
streaming (hedging on the next one when the first is slow to its first
token, if the group asks for it), forward that stream, and account for the
turn.

``TurnRunner`` is plain async code, no Ray and no network library: it talks
to upstreams through an ``UpstreamTransport`` (``router.turn.transport``;
the real ones are aiohttp and httpx pools in ``deployments``, tests also use
``router.turn.memory_transport``), and the provider-caller deployment is a
thin shell around it.

It owns the turn's accounting. Every attempt is reported the moment it
starts (``AttemptStarted``, unless the plan already holds its lease) and the
moment it ends (its ``AttemptOutcome``, which releases that lease), on one
ordered channel, so a hedge racer or a fallback is counted in flight exactly
while it runs. The turn's record is emitted once, when it ends, whichever
way it ends. What crosses back to the ingress is, in order:
one ``TurnHead`` (or one ``TurnFailure`` if no endpoint could start), then
the stream's bytes, unchanged from upstream except for the usage-only chunk:
dropped if the client did not ask for it, else noted with the endpoint and
cost (``router.serving_note``). Before the first byte is forwarded a failed attempt
just moves on; after it, the group's ``midstream`` policy either carries the
turn over to the next endpoint (spliced, ``ContinuationRelay``) or ends the
stream with an SSE error event. A turn with several choices (``n > 1``) is
never carried over: a continuation splices one text, and the client is
already reading several; it ends with the error event.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from router.catalog import Price, TurnCost, turn_cost
from router.config import RouterConfig
from router.errors import (
    AllAttemptsFailed,
    ClientTooSlow,
    RouterStopping,
    TurnEndedByRouter,
    UpstreamDisconnected,
    UpstreamError,
    UpstreamTimeout,
)
from router.continuation import Seam, continuation_messages
from router.hedge import HedgeBudget
from router.plan_walk import Candidate, PlanWalk
from router.providers import codec_for
from router.providers.chunks import usage_dict
from router.response_cache import CachedTurn, TurnRecorder, entry_from_completion
from router.outcome import AttemptStarted, LeaseEvent, OutcomeKind
from router.serving_note import serving_note
from router.sse import DONE_EVENT, encode_json
from router.stream_watch import StreamWatch, Usage
from router.turn.attempt_body import attempt_body
from router.turn.relay import ContinuationRelay, PassThroughRelay
from router.turn.state import TurnFailure, TurnHead, TurnRequest, TurnState, ended_by_router
from router.turn.pace import ReadPacer, wait_for_reader
from router.turn.reading import as_openai_sse, completion_text, read_to_first_content
from router.turn.stop import LiveTurns
from router.turn.transport import UpstreamTransport

__all__ = ["TurnHead", "TurnFailure", "TurnRequest", "TurnRunner"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _OpenAttempt:
    """An attempt that has its first content token and an open stream."""

    candidate: Candidate
    relay: PassThroughRelay | ContinuationRelay
    start_s: float
    stack: contextlib.AsyncExitStack  # holds the upstream response open
    chunks: AsyncIterator[bytes]
    first: bytes  # what arrived up to and with the first content token
    ttft_s: float  # from the attempt's start


class TurnRunner:
    def __init__(
        self,
        config: RouterConfig,
        transport: UpstreamTransport,
        report: Callable[[list[LeaseEvent]], None],
        emit: Callable[[TurnState], None],
        clock: Callable[[], float] = time.monotonic,
        prices: Mapping[str, Price] | None = None,
        cache_put: Callable[[str, CachedTurn], None] | None = None,
        cache_entry_bytes: int = 1 << 20,
    ):
        self._cache_put = cache_put
        self._cache_entry_bytes = cache_entry_bytes
        self._config = config
        self._prices = dict(prices or {})  # endpoint name -> catalog price
        # Endpoint name -> (its config, its own group's timeouts), built once.
        self._endpoints = {
            endpoint.name: (endpoint, group.timeouts)
            for group in config.model_groups.values()
            for endpoint in group.endpoints
        }
        self._codecs = {name: codec_for(endpoint.provider) for name, (endpoint, _) in self._endpoints.items()}
        # Per group, this replica's hedge budget (groups without hedging have none).
        self._hedge_budgets = {
            name: HedgeBudget(group.hedge.max_share) for name, group in config.model_groups.items() if group.hedge is not None
        }
        self._transport = transport
        self._report = report
        self._emit = emit
        self._clock = clock
        self.live = LiveTurns()  # what a drain waits on, and stops when its grace ends

    def _begin(self, request: TurnRequest) -> TurnState:
        turn = TurnState(request, self._clock(), notes=list(request.notes))
        turn.stop = self.live.add(request.turn_id)
        return turn

    def _started(self, turn: TurnState, candidate: Candidate) -> None:
        """An attempt goes out: count it in flight unless the plan already does."""
        if candidate.index or not turn.request.reserved:
            self._report([AttemptStarted(candidate.endpoint.name, turn.lease(candidate))])

    async def stream(self, request: TurnRequest, pacer: ReadPacer | None = None) -> AsyncIterator[TurnHead | TurnFailure | bytes]:
        """A streaming turn: ``TurnHead`` or ``TurnFailure``, then SSE bytes.
        With ``pacer``, upstream reads pause while the reader is behind."""
        turn = self._begin(request)
        turn.pacer = pacer
        # Keeping the forwarded bytes costs one list append per piece, and
        # only for turns the response cache will keep.
        recorder = TurnRecorder(self._cache_entry_bytes) if request.cache_key and self._cache_put else None
        try:
            # Closed here, not by the loop's clean-up of abandoned generators:
            # a reader that stops early (aclose) must see the upstream closed
            # and the attempt recorded before the record goes out.
            async with contextlib.aclosing(self._stream_turn(turn)) as items:
                async for item in items:
                    if recorder is not None and isinstance(item, bytes):
                        recorder.feed(item)
                    yield item
        except (asyncio.CancelledError, GeneratorExit):
            turn.status, turn.http_status, turn.error_type = "cancelled", 499, "client_disconnected"
            raise
        finally:
            if recorder is not None and turn.status == "ok":
                usage = turn.usage
                usage_map = usage_dict(usage.prompt_tokens or 0, usage.completion_tokens or 0) if usage else None
                turn.cache_entry = recorder.finish(usage=usage_map, endpoint=turn.endpoint)
            if turn.losers:  # cancelled at once; long settled by now, but their outcomes belong to this turn
                await asyncio.gather(*turn.losers, return_exceptions=True)
            self._finish(turn)

    async def complete(self, request: TurnRequest) -> tuple[TurnHead, bytes] | TurnFailure:
        """A non-streaming turn: the upstream's ``chat.completion`` body as is."""
        turn = self._begin(request)
        try:
            return await self._complete_turn(turn)
        except asyncio.CancelledError:
            turn.status, turn.http_status, turn.error_type = "cancelled", 499, "client_disconnected"
            raise
        finally:
            self._finish(turn)

    def _walk(self, turn: TurnState) -> PlanWalk:
        request = turn.request
        total_s = self._config.model_groups[request.group].timeouts.total_s
        return PlanWalk(
            request.endpoints,
            request.max_attempts,
            turn.started_s + total_s,
            self._endpoints,
            request_error_endpoints=request.request_error_endpoints,
            clock=self._clock,
        )

    async def _stream_turn(self, turn: TurnState):
        """Walk the plan. Before the first token, a failed attempt just moves
        on (hedged, if the group says so); after it, the group's ``midstream``
        policy decides: carry the turn over to the next endpoint and splice,
        or end with an SSE error."""
        group = self._config.model_groups[turn.request.group]
        walk = self._walk(turn)
        budget = self._hedge_budgets.get(turn.request.group)
        if budget is not None:
            budget.turn()
        resume = turn.request.resume
        # What the client has heard, once streaming (a turn carried over
        # from a caller that died starts with what the client already has).
        sent_text: str | None = (resume.sent_text or None) if resume else None
        chunk_id: str | None = resume.chunk_id if resume else None
        if resume is not None:
            turn.notes.append("carried over from a provider-caller that was lost mid-stream")
        while turn.ended_by is None and not turn.stop.requested and (candidate := walk.next()) is not None:
            try:
                if sent_text is None:
                    attempt = await self._first_token(turn, candidate, walk, budget)
                else:
                    relay = ContinuationRelay(self._watch(turn, candidate), Seam(sent_text), chunk_id)
                    request = {**turn.request.body, "messages": continuation_messages(turn.request.body["messages"], sent_text)}
                    attempt = await self._open(turn, candidate, relay, request)
            except TurnEndedByRouter:
                break
            except UpstreamError as error:
                if sent_text is None and not walk.after_failure(error):
                    break
                continue
            forward = self._forward(turn, attempt)
            try:
                async for item in forward:
                    yield item
            except (UpstreamError, TurnEndedByRouter):
                chunk_id = chunk_id or attempt.relay.watch.chunk_id
                sent_text = (sent_text or "") + attempt.relay.forwarded_text
                if group.midstream == "error" or attempt.relay.watch.saw_tool_calls or turn.request.choices > 1:
                    break
                continue
            finally:
                await forward.aclose()  # closes the upstream connection now, not at GC
            watch = attempt.relay.watch
            turn.usage, turn.status, turn.http_status = watch.usage, "ok", 200
            turn.text = watch.reply_text if turn.request.choices > 1 else (sent_text or "") + attempt.relay.forwarded_text
            return
        if turn.ended_by is not None or turn.stop.requested:
            yield ended_by_router(turn, started=sent_text is not None)
            if sent_text is not None:
                yield DONE_EVENT
            return
        if sent_text is None:
            yield self._fail(turn)
            return
        # The stream had started: end it cleanly with an error event.
        last = turn.errors[-1]
        turn.http_status, turn.error_type = 200, type(last).__name__
        yield encode_json(last.to_openai())
        yield DONE_EVENT

    def _watch(self, turn: TurnState, candidate: Candidate) -> StreamWatch:
        name = candidate.endpoint.name
        if not turn.request.include_usage:
            return StreamWatch(name, forward_usage=False)
        # The usage chunk the client asked for names the endpoint and the cost.
        return StreamWatch(name, forward_usage=True, usage_note=functools.partial(serving_note, name, self._prices.get(name)))

    async def _first_token(self, turn: TurnState, candidate: Candidate, walk: PlanWalk, budget: HedgeBudget | None) -> _OpenAttempt:
        """Open ``candidate`` and wait for its first token. With a hedge delay
        in the plan and room in the budget, a candidate with no first token
        by then gets the next one started beside it: the first to produce a
        content token wins, the other is cancelled at once. Raises the last
        ``UpstreamError`` if every attempt started here failed."""
        def open_fresh(c: Candidate):
            return self._open(turn, c, PassThroughRelay(self._watch(turn, c)), turn.request.body)

        hedge_after_s = turn.request.hedge_after_s
        if budget is None or hedge_after_s is None:
            return await open_fresh(candidate)
        racers: dict[asyncio.Task, Candidate] = {}

        def start(c: Candidate) -> None:
            racers[asyncio.ensure_future(open_fresh(c))] = c

        errors: list[UpstreamError] = []
        won = False
        try:
            start(candidate)
            done, _ = await asyncio.wait(racers, timeout=hedge_after_s)
            if not done and budget.can_hedge() and (second := walk.next()) is not None:
                budget.try_hedge()
                turn.hedged = True
                start(second)
            while racers:
                done, _ = await asyncio.wait(racers, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    del racers[task]
                    error = task.exception()
                    if error is None:
                        won = True
                        return task.result()  # every other racer is cancelled below
                    if not isinstance(error, UpstreamError):
                        raise error
                    errors.append(error)
            # Every racer failed: the turn goes on as after any failure, and a
            # request fault (not retryable) decides where.
            raise next((e for e in errors if not e.retryable), errors[-1])
        finally:
            for task, racer in racers.items():
                if won:
                    turn.lost_race.add(racer.index)
                if task.done() and not task.cancelled() and task.exception() is None:
                    turn.losers.append(asyncio.ensure_future(self._discard(turn, task.result())))
                else:
                    task.cancel()
                    turn.losers.append(task)

    async def _discard(self, turn: TurnState, attempt: _OpenAttempt) -> None:
        """Close a hedge racer that got its first token just after the winner."""
        await attempt.stack.aclose()
        self._attempt(turn, attempt.candidate, attempt.start_s, OutcomeKind.CANCELLED, ttft_s=attempt.ttft_s)

    async def _open(self, turn: TurnState, candidate: Candidate, relay, request: dict) -> _OpenAttempt:
        """Send ``request`` to one endpoint and read up to its first content
        token, within the first-token deadline (which covers connect, headers
        and any preamble). A failure is recorded and raised as ``UpstreamError``;
        on cancellation (a lost hedge race, a gone client) the connection is
        closed before this returns."""
        endpoint, codec = candidate.endpoint, self._codecs[candidate.endpoint.name]
        start_s = self._clock()
        stack = contextlib.AsyncExitStack()
        self._started(turn, candidate)
        try:
            body = attempt_body(turn, codec, request, endpoint, stream=True)
            async with asyncio.timeout(min(candidate.timeouts.first_token_s, candidate.deadline_s - start_s)) as deadline:
                with turn.stop.watching(deadline):
                    response = await stack.enter_async_context(self._transport.open(endpoint, codec, body, candidate.timeouts, stream=True))
                    chunks = self._transport.chunks(response, endpoint.name)
                    if not codec.passthrough:
                        translator = codec.stream_translator(endpoint.model, endpoint=endpoint.name, choices=turn.request.choices)
                        chunks = as_openai_sse(chunks, translator)
                    first = await read_to_first_content(chunks, relay)
        except TimeoutError as exc:
            await stack.aclose()
            if turn.stop.requested:
                self._attempt(turn, candidate, start_s, OutcomeKind.CANCELLED)
                turn.ended_by = RouterStopping("the router is stopping; retry the turn")
                raise turn.ended_by from exc
            error = UpstreamTimeout("no first token before the first-token deadline", endpoint=endpoint.name)
            self._attempt(turn, candidate, start_s, OutcomeKind.TIMEOUT, error)
            raise error from exc
        except UpstreamError as error:
            await stack.aclose()
            self._attempt(turn, candidate, start_s, error.kind, error)
            raise
        except BaseException:
            await stack.aclose()
            # A hedge's loser had no first token in all this time: a lower
            # bound of its TTFT, which is the signal routing should see.
            lower_bound_s = self._clock() - start_s if candidate.index in turn.lost_race else None
            self._attempt(turn, candidate, start_s, OutcomeKind.CANCELLED, ttft_s=lower_bound_s)
            raise
        return _OpenAttempt(candidate, relay, start_s, stack, chunks, first, self._clock() - start_s)

    async def _forward(self, turn: TurnState, attempt: _OpenAttempt):
        """The opened attempt's stream: ``TurnHead`` first if this is the
        turn's first stream, then the bytes to forward, within the turn's
        deadline. Records the attempt; a failure raises ``UpstreamError``."""
        candidate, relay = attempt.candidate, attempt.relay
        endpoint = candidate.endpoint
        loop = asyncio.get_running_loop()
        try:
            async with attempt.stack, asyncio.timeout_at(loop.time() + max(0.0, candidate.deadline_s - self._clock())) as deadline:
                with turn.stop.watching(deadline):
                    if turn.endpoint is None and turn.request.resume is None:  # a resumed turn's client has its headers
                        turn.ttft_s, turn.attempt_ttft_s = self._clock() - turn.started_s, attempt.ttft_s
                        turn.overhead_s = turn.router_time_s()
                        turn.model = relay.watch.model or endpoint.model
                        yield TurnHead(endpoint.name, endpoint.provider, turn.model, turn.received_at, attempt.ttft_s)
                    turn.endpoint = endpoint.name
                    pacer = turn.pacer
                    if attempt.first:
                        yield attempt.first
                        if pacer is not None and pacer.full:
                            await wait_for_reader(turn, pacer)
                    if relay.failure is None:
                        async for raw in attempt.chunks:
                            out = relay.feed(raw)
                            if out:
                                yield out
                                if pacer is not None and pacer.full:
                                    await wait_for_reader(turn, pacer)
                            if relay.failure is not None:
                                break
                    if relay.failure is not None:
                        raise relay.failure  # after the good part of its read went out
                    if not relay.watch.done:
                        raise UpstreamDisconnected("upstream stream ended before [DONE]", endpoint=endpoint.name)
        except TimeoutError as exc:
            if turn.stop.requested or turn.waiting_for_reader:
                self._attempt(turn, candidate, attempt.start_s, OutcomeKind.CANCELLED)
                turn.ended_by = (
                    RouterStopping("the router is stopping and ended this turn before it finished; retry it")
                    if turn.stop.requested else
                    ClientTooSlow("the client read nothing of its stream until the turn's deadline")
                )
                raise turn.ended_by from exc
            error = UpstreamTimeout("turn deadline reached", endpoint=endpoint.name)
            self._attempt(turn, candidate, attempt.start_s, OutcomeKind.TIMEOUT, error)
            raise error from exc
        except UpstreamError as error:
            self._attempt(turn, candidate, attempt.start_s, error.kind, error)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            self._attempt(turn, candidate, attempt.start_s, OutcomeKind.CANCELLED)
            raise
        usage = relay.watch.usage
        self._attempt(turn, candidate, attempt.start_s, OutcomeKind.OK, ttft_s=attempt.ttft_s,
                      cached_tokens=usage.cached_tokens if usage else None)

    async def _complete_turn(self, turn: TurnState) -> tuple[TurnHead, bytes] | TurnFailure:
        walk = self._walk(turn)
        while not turn.stop.requested and (candidate := walk.next()) is not None:
            endpoint = candidate.endpoint
            codec = self._codecs[endpoint.name]
            start_s = self._clock()
            self._started(turn, candidate)
            try:
                body = attempt_body(turn, codec, turn.request.body, endpoint, stream=False)
                async with asyncio.timeout(max(0.0, candidate.deadline_s - start_s)) as deadline:
                    with turn.stop.watching(deadline):
                        async with self._transport.open(endpoint, codec, body, candidate.timeouts, stream=False) as response:
                            payload = await self._transport.read(response, endpoint.name)
                completion = codec.parse_response(payload, endpoint=endpoint.name, model=endpoint.model)
                if not codec.passthrough:
                    payload = json.dumps(completion, separators=(",", ":")).encode()
            except TimeoutError:
                if turn.stop.requested:
                    self._attempt(turn, candidate, start_s, OutcomeKind.CANCELLED)
                    break
                error: UpstreamError = UpstreamTimeout("turn deadline reached", endpoint=endpoint.name)
            except UpstreamError as exc:
                error = exc
            else:
                now = self._clock()
                turn.ttft_s, turn.attempt_ttft_s = now - turn.started_s, now - start_s
                turn.overhead_s = turn.router_time_s()
                turn.endpoint, turn.model = endpoint.name, completion.get("model") or endpoint.model
                turn.usage, turn.status, turn.http_status = Usage.from_dict(completion.get("usage")), "ok", 200
                turn.text = completion_text(completion)
                self._attempt(turn, candidate, start_s, OutcomeKind.OK, ttft_s=turn.attempt_ttft_s,
                              cached_tokens=turn.usage.cached_tokens if turn.usage else None)
                if turn.request.cache_key and self._cache_put:
                    turn.cache_entry = entry_from_completion(completion, endpoint=endpoint.name, provider=endpoint.provider)
                head = TurnHead(endpoint.name, endpoint.provider, turn.model, turn.received_at, turn.attempt_ttft_s)
                return head, payload
            self._attempt(turn, candidate, start_s, error.kind, error)
            if not walk.after_failure(error):
                break
        if turn.stop.requested:
            return ended_by_router(turn, started=False)
        return self._fail(turn)

    def _fail(self, turn: TurnState) -> TurnFailure:
        failure = AllAttemptsFailed(turn.errors)
        turn.http_status, turn.error_type = failure.http_status, type(failure).__name__
        return TurnFailure(failure.http_status, failure.to_openai())

    def _attempt(self, turn: TurnState, candidate: Candidate, start_s: float, kind: OutcomeKind,
                 error: UpstreamError | None = None, *, ttft_s: float | None = None, cached_tokens: int | None = None) -> None:
        """An attempt ended: recorded for the turn, and reported at once (its
        lease is released now, not when the whole turn ends). A refused
        provider key is the operator's to fix: it is logged (redacted)."""
        if kind is OutcomeKind.UPSTREAM_AUTH:
            log.warning("endpoint %s refused the router's provider key: %s", candidate.endpoint.name, getattr(error, "detail", None))
        self._report([turn.record_attempt(candidate, self._clock() - start_s, kind, error, ttft_s=ttft_s, cached_tokens=cached_tokens)])

    def _cost(self, turn: TurnState) -> TurnCost | None:
        price = self._prices.get(turn.endpoint) if turn.endpoint else None
        if price is None or turn.status != "ok":
            return None
        usage = turn.usage
        return turn_cost(
            price,
            usage.prompt_tokens if usage else None,
            usage.completion_tokens if usage else None,
            messages=turn.request.body.get("messages", ()),
            tools=turn.request.body.get("tools"),
            completion_text=turn.text,
            cached_tokens=usage.cached_tokens if usage else None,
        )

    def _finish(self, turn: TurnState) -> None:
        """The turn's one end: its cache entry and its record."""
        if turn.pacer is not None and turn.pacer.pauses:
            turn.notes.append(
                f"the client read slowly: upstream reads paused {turn.pacer.pauses} times "
                f"({turn.pacer.limit_bytes} bytes waiting)"
            )
        if turn.errors and turn.status != "ok":
            last = turn.errors[-1]
            turn.error_detail = f"{last.endpoint}: {getattr(last, 'detail', None) or last.message}"
        if turn.cache_entry is not None and turn.request.cache_key:
            self._cache_put(turn.request.cache_key, turn.cache_entry)
        if turn.endpoint is not None:
            turn.provider = self._endpoints[turn.endpoint][0].provider
        turn.cost, turn.total_s = self._cost(turn), self._clock() - turn.started_s
        self.live.discard(turn.request.turn_id)
        self._emit(turn)
