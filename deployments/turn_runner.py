"""Serving one turn from a plan: try its endpoints in order until one starts
streaming, forward that stream, and account for the turn.

``TurnRunner`` is plain async code, no Ray: the provider-caller deployment
is a thin shell around it. What crosses back to the ingress is, in order:
one ``TurnHead`` (or one ``TurnFailure`` if no endpoint could start), then
the stream's bytes, unchanged from upstream except for the usage-only chunk
the client did not ask for. Failover happens only before the first byte is
forwarded; after that, a failure ends the stream with an SSE error event.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from router.catalog import Price, TurnCost, turn_cost
from router.config import EndpointConfig, RouterConfig
from router.errors import (
    AllAttemptsFailed,
    InvalidRequest,
    UpstreamCannotServe,
    UpstreamDisconnected,
    UpstreamError,
    UpstreamTimeout,
)
from router.continuation import Seam, continuation_messages
from router.providers import ProviderCodec, TranslatedStream, codec_for
from router.providers.chunks import usage_dict
from router.response_cache import CachedTurn, TurnRecorder, entry_from_completion
from router.outcome import AttemptOutcome, OutcomeKind, outcome_kind_of
from router.sse import DONE_EVENT, SSEDecoder, encode_json
from router.stream_watch import StreamWatch, Usage
from turnlog import AttemptRecord, TurnRecord

from deployments.relay import ContinuationRelay, PassThroughRelay
from deployments.upstream import UpstreamPool

__all__ = ["TurnHead", "TurnFailure", "TurnRequest", "TurnRunner"]


@dataclass(slots=True, frozen=True)
class TurnHead:
    """The stream has started on ``endpoint``: the ingress may send headers."""

    endpoint: str
    provider: str
    model: str
    caller_received_at: float  # wall clock, s: when the caller got the turn
    upstream_ttft_s: float  # from the served attempt's start to its first token


@dataclass(slots=True, frozen=True)
class TurnFailure:
    """No endpoint could start the turn: the OpenAI error to send, as is."""

    http_status: int
    error: dict[str, Any]


@dataclass(slots=True, frozen=True)
class TurnRequest:
    """What the ingress hands the caller for one turn."""

    request_id: str
    group: str
    endpoints: tuple[str, ...]
    max_attempts: int
    body: dict[str, Any]
    stream: bool
    include_usage: bool
    received_at: float = field(default_factory=time.time)  # wall clock, s
    api_key_id: str | None = None  # the key's name, never the key
    tags: tuple[str, ...] = ()  # the tags the turn asked for
    store_messages: bool = False  # copy the conversation into the turn log (off: privacy)
    cache_key: str | None = None  # fill the response cache under this key when the turn ends well


@dataclass(slots=True)
class _Turn:
    """Accounting for one turn while it runs."""

    request: TurnRequest
    started_s: float
    received_at: float = field(default_factory=time.time)  # wall clock, s
    attempts: list[AttemptRecord] = field(default_factory=list)
    outcomes: list[AttemptOutcome] = field(default_factory=list)
    endpoint: str | None = None
    ttft_s: float | None = None  # from the turn's start
    attempt_ttft_s: float | None = None  # from the served attempt's start
    usage: Usage | None = None
    model: str | None = None
    status: str = "error"
    http_status: int = 502
    error_type: str | None = None
    text: str = ""  # the reply the client got (for a cost estimate without usage)
    overhead_s: float | None = None  # router time before the first token left the caller
    cache_entry: CachedTurn | None = None  # the non-streaming reply, for the response cache


class TurnRunner:
    def __init__(
        self,
        config: RouterConfig,
        pool: UpstreamPool,
        report: Callable[[list[AttemptOutcome]], None],
        emit_record: Callable[[TurnRecord], None],
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
        self._pool = pool
        self._report = report
        self._emit_record = emit_record
        self._clock = clock

    async def stream(self, request: TurnRequest) -> AsyncIterator[TurnHead | TurnFailure | bytes]:
        """A streaming turn: ``TurnHead`` or ``TurnFailure``, then SSE bytes."""
        turn = _Turn(request, self._clock())
        # Keeping the forwarded bytes costs one list append per piece, and
        # only for turns the response cache will keep.
        recorder = TurnRecorder(self._cache_entry_bytes) if request.cache_key and self._cache_put else None
        try:
            async for item in self._stream_turn(turn):
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
            self._finish(turn)

    async def complete(self, request: TurnRequest) -> tuple[TurnHead, bytes] | TurnFailure:
        """A non-streaming turn: the upstream's ``chat.completion`` body as is."""
        turn = _Turn(request, self._clock())
        try:
            return await self._complete_turn(turn)
        except asyncio.CancelledError:
            turn.status, turn.http_status, turn.error_type = "cancelled", 499, "client_disconnected"
            raise
        finally:
            self._finish(turn)

    def _candidates(self, turn: _Turn):
        """The plan's endpoints, each with its own group's timeouts, within
        the requested group's turn deadline and attempt bound."""
        requested = self._config.model_groups[turn.request.group]
        deadline_s = turn.started_s + requested.timeouts.total_s
        for name in turn.request.endpoints[: turn.request.max_attempts]:
            if self._clock() >= deadline_s:
                return
            endpoint, timeouts = self._endpoints[name]
            yield endpoint, timeouts, deadline_s

    async def _stream_turn(self, turn: _Turn):
        """Walk the plan. Before the first token, a failed attempt just moves
        on; after it, the group's ``midstream`` policy decides: carry the turn
        over to the next endpoint and splice, or end with an SSE error."""
        errors: list[UpstreamError] = []
        group = self._config.model_groups[turn.request.group]
        sent_text: str | None = None  # what the client has heard, once streaming
        chunk_id: str | None = None
        for endpoint, timeouts, deadline_s in self._candidates(turn):
            attempt_start = self._clock()
            watch = StreamWatch(endpoint.name, forward_usage=turn.request.include_usage)
            codec = self._codecs[endpoint.name]
            if sent_text is None:
                request = turn.request.body
                relay: PassThroughRelay | ContinuationRelay = PassThroughRelay(watch)
            else:
                request = {**turn.request.body, "messages": continuation_messages(turn.request.body["messages"], sent_text)}
                relay = ContinuationRelay(watch, Seam(sent_text), chunk_id)
            streaming = False  # did this attempt reach the client?
            attempt = self._stream_attempt(turn, endpoint, codec, timeouts, deadline_s, relay, request, attempt_start)
            try:
                async for item in attempt:
                    streaming = True
                    if isinstance(item, TurnHead):
                        chunk_id = watch.chunk_id
                    yield item
            except UpstreamError as error:
                self._attempt(turn, endpoint.name, attempt_start, outcome_kind_of(error), error)
                errors.append(error)
                if streaming or sent_text is not None:
                    sent_text = (sent_text or "") + relay.forwarded_text
                    if group.midstream == "error" or watch.saw_tool_calls:
                        break
                elif not error.retryable:
                    break
                continue
            except (asyncio.CancelledError, GeneratorExit):
                self._attempt(turn, endpoint.name, attempt_start, OutcomeKind.CANCELLED)
                raise
            finally:
                await attempt.aclose()  # closes the upstream connection now, not at GC
            self._attempt(turn, endpoint.name, attempt_start, OutcomeKind.OK)
            turn.usage, turn.status, turn.http_status = watch.usage, "ok", 200
            turn.text = (sent_text or "") + relay.forwarded_text
            return
        if sent_text is None:
            yield self._fail(turn, errors)
            return
        # The stream had started: end it cleanly with an error event.
        last = errors[-1]
        turn.http_status, turn.error_type = 200, type(last).__name__
        yield encode_json(last.to_openai())
        yield DONE_EVENT

    async def _stream_attempt(self, turn: _Turn, endpoint, codec, timeouts, deadline_s: float, relay, request: dict, attempt_start: float):
        """One endpoint's stream: ``TurnHead`` first if this is the turn's first
        stream, then the bytes to forward. Raises ``UpstreamError``."""
        watch = relay.watch
        body = _request_body(codec, request, endpoint, stream=True)
        loop = asyncio.get_running_loop()
        streaming = False
        try:
            # One timer: the first-token deadline until the first token
            # (covering connect, headers and preamble), then the turn's.
            async with asyncio.timeout(min(timeouts.first_token_s, deadline_s - self._clock())) as deadline:
                async with self._pool.open(endpoint, codec, body, timeouts, stream=True) as response:
                    chunks = self._pool.chunks(response, endpoint.name)
                    if not codec.passthrough:
                        chunks = _as_openai_sse(chunks, codec.stream_translator(endpoint.model, endpoint=endpoint.name))
                    first = await _read_to_first_content(chunks, relay)
                    deadline.reschedule(loop.time() + max(0.0, deadline_s - self._clock()))
                    streaming = True
                    if turn.endpoint is None:
                        now = self._clock()
                        turn.ttft_s, turn.attempt_ttft_s = now - turn.started_s, now - attempt_start
                        turn.overhead_s = self._overhead_s(turn)
                        turn.model = watch.model or endpoint.model
                        yield TurnHead(endpoint.name, endpoint.provider, turn.model, turn.received_at, turn.attempt_ttft_s)
                    turn.endpoint = endpoint.name
                    if first:
                        yield first
                    async for raw in chunks:
                        out = relay.feed(raw)
                        if out:
                            yield out
                    if not watch.done:
                        raise UpstreamDisconnected("upstream stream ended before [DONE]", endpoint=endpoint.name)
        except TimeoutError as exc:
            message = "turn deadline reached" if streaming else "no first token before the first-token deadline"
            raise UpstreamTimeout(message, endpoint=endpoint.name) from exc

    async def _complete_turn(self, turn: _Turn) -> tuple[TurnHead, bytes] | TurnFailure:
        errors: list[UpstreamError] = []
        for endpoint, timeouts, deadline_s in self._candidates(turn):
            codec = self._codecs[endpoint.name]
            attempt_start = self._clock()
            try:
                body = _request_body(codec, turn.request.body, endpoint, stream=False)
                async with asyncio.timeout(max(0.0, deadline_s - self._clock())):
                    async with self._pool.open(endpoint, codec, body, timeouts, stream=False) as response:
                        payload = await response.aread()
                completion = codec.parse_response(payload, endpoint=endpoint.name)
                if not codec.passthrough:
                    payload = json.dumps(completion, separators=(",", ":")).encode()
            except TimeoutError:
                error: UpstreamError = UpstreamTimeout("turn deadline reached", endpoint=endpoint.name)
            except UpstreamError as exc:
                error = exc
            else:
                now = self._clock()
                turn.ttft_s, turn.attempt_ttft_s = now - turn.started_s, now - attempt_start
                turn.overhead_s = self._overhead_s(turn)
                turn.endpoint, turn.model = endpoint.name, completion.get("model") or endpoint.model
                turn.usage, turn.status, turn.http_status = Usage.from_dict(completion.get("usage")), "ok", 200
                turn.text = _completion_text(completion)
                self._attempt(turn, endpoint.name, attempt_start, OutcomeKind.OK)
                if turn.request.cache_key and self._cache_put:
                    turn.cache_entry = entry_from_completion(completion, endpoint=endpoint.name, provider=endpoint.provider)
                head = TurnHead(endpoint.name, endpoint.provider, turn.model, turn.received_at, turn.attempt_ttft_s)
                return head, payload
            self._attempt(turn, endpoint.name, attempt_start, outcome_kind_of(error), error)
            errors.append(error)
            if not error.retryable:
                break
        return self._fail(turn, errors)

    def _fail(self, turn: _Turn, errors: list[UpstreamError]) -> TurnFailure:
        failure = AllAttemptsFailed(errors)
        turn.http_status, turn.error_type = failure.http_status, type(failure).__name__
        return TurnFailure(failure.http_status, failure.to_openai())

    def _attempt(self, turn: _Turn, endpoint: str, start_s: float, kind: OutcomeKind, error: UpstreamError | None = None) -> None:
        duration_s = self._clock() - start_s
        http_status = getattr(error, "status_code", None) if error else (200 if kind is OutcomeKind.OK else None)
        turn.attempts.append(AttemptRecord(endpoint, kind.value, duration_s, http_status))
        turn.outcomes.append(
            AttemptOutcome(
                endpoint,
                kind,
                duration_s,
                ttft_s=turn.attempt_ttft_s if kind is OutcomeKind.OK else None,
                http_status=http_status,
                retry_after_s=getattr(error, "retry_after_s", None),
                fallback=bool(turn.outcomes),
            )
        )

    def _overhead_s(self, turn: _Turn) -> float:
        """Time the router itself spent before the first token left the caller:
        from the ingress receiving the turn, less the upstream's own time (the
        failed attempts and the served attempt's time to first token). The
        trip back out through the ingress is not in it (the ingress's
        ``server-timing`` header shows that part)."""
        upstream_s = sum(a.duration_s for a in turn.attempts) + (turn.attempt_ttft_s or 0.0)
        return max(0.0, time.time() - turn.request.received_at - upstream_s)

    def _cost(self, turn: _Turn) -> TurnCost | None:
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
        )

    def _finish(self, turn: _Turn) -> None:
        self._report(turn.outcomes)
        if turn.cache_entry is not None and turn.request.cache_key:
            self._cache_put(turn.request.cache_key, turn.cache_entry)
        usage = turn.usage
        cost = self._cost(turn)
        endpoint_config = self._endpoints[turn.endpoint][0] if turn.endpoint else None
        self._emit_record(
            TurnRecord(
                request_id=turn.request.request_id,
                timestamp=datetime.fromtimestamp(turn.request.received_at, tz=timezone.utc),
                model_group=turn.request.group,
                endpoint=turn.endpoint,
                provider=endpoint_config.provider if endpoint_config else None,
                model=turn.model,
                streamed=turn.request.stream,
                status=turn.status,
                http_status=turn.http_status,
                error_type=turn.error_type,
                ttft_s=turn.ttft_s,
                total_s=self._clock() - turn.started_s,
                prompt_tokens=usage.prompt_tokens if usage else (cost.prompt_tokens if cost else None),
                completion_tokens=usage.completion_tokens if usage else (cost.completion_tokens if cost else None),
                total_tokens=usage.total_tokens if usage else None,
                attempts=turn.attempts,
                fallback_count=max(0, len(turn.attempts) - 1),
                api_key_id=turn.request.api_key_id,
                cost_usd=cost.usd if cost else None,
                cost_estimated=cost.estimated if cost else False,
                gateway_overhead_s=turn.overhead_s,
                tags=list(turn.request.tags),
                messages_json=json.dumps(turn.request.body.get("messages")) if turn.request.store_messages else None,
            )
        )


async def _read_to_first_content(chunks: AsyncIterator[bytes], relay) -> bytes:
    """Read until the first content token arrives; return everything accepted
    so far, so a role-only preamble is forwarded together with it. The
    caller's first-token deadline bounds the wait."""
    pending: list[bytes] = []
    watch = relay.watch
    async for raw in chunks:
        out = relay.feed(raw)
        if out:
            pending.append(out)
        if watch.saw_content or watch.done:
            return b"".join(pending)
    raise UpstreamDisconnected("upstream closed before the first token", endpoint=watch.endpoint)


def _completion_text(completion: dict[str, Any]) -> str:
    choices = completion.get("choices") or [{}]
    return (choices[0].get("message") or {}).get("content") or ""


def _request_body(codec: ProviderCodec, request: dict[str, Any], endpoint: EndpointConfig, *, stream: bool) -> bytes:
    """The provider's body for this attempt; a request this provider cannot
    express fails this link only (another provider may serve it)."""
    try:
        body, _notes = codec.request_body(request, endpoint.model, stream)
    except InvalidRequest as exc:
        raise UpstreamCannotServe(f"{endpoint.provider}: {exc.message}", endpoint=endpoint.name) from exc
    return body


async def _as_openai_sse(chunks: AsyncIterator[bytes], translator) -> AsyncIterator[bytes]:
    """A provider's stream, translated into OpenAI SSE bytes, one piece per
    network read (the translated path re-encodes; OpenAI upstreams skip it)."""
    decoder, stream = SSEDecoder(), TranslatedStream(translator)
    async for raw in chunks:
        events = stream.feed(decoder.feed(raw))
        if events:
            yield b"".join(e.raw for e in events)
    yield b"".join(e.raw for e in stream.close())
