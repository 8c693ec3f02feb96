"""The HTTP ingress: OpenAI's ``/v1/chat/completions``, ``/v1/models``
(and ``/v1/models/{id}``) and ``/health`` on Ray Serve, and the console's
pages (``deployments.console``); the OpenAI APIs a voice gateway does not
serve (``NOT_SERVED``) answer a 404 that says so.

Per turn it validates the request, asks the ``LatencyTracker`` for a plan
(one actor call), and hands the turn to a provider-caller replica (or, with
``upstream_calls: ingress``, runs it in process: ``deployments.dispatch``),
whose stream it forwards as it comes. Every error leaves as OpenAI's error object.
"""


import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterator

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from router.catalog import load_catalog, model_card
from router.config import RouterConfig
from router.conversation import CONVERSATION_HEADER, CONVERSATION_TURN_HEADER, Conversation, conversation_of
from router.keys import KeyInfo, KeyRing
from router.errors import (
    ModelNotFound,
    RouterStopping,
    TurnFailed,
    TurnInterrupted,
    UnsupportedMediaType,
)
from router.openai_wire import drop_client_overrides, is_json_content_type, parse_chat_request
from router.response_cache import CachedTurn, replay_completion, replay_sse
from router.routing_state import check_eligible
from router.scrape_access import ScrapeAccess
from router.sse import DONE_DATA, DONE_EVENT, SSEDecoder, encode_json
from router.turn import TurnFailure, TurnHead, TurnRequest, TurnSettled, new_turn_id
from router.turn.guard import TurnGuard
from router.turn.resume import resume_point
from router.turn.stop import LiveTurns

from deployments.replicas import replica_options
from deployments.cache_actor import cache_hit_record
from deployments.cache_lookup import CacheLookup
from deployments.console.routes import add_console_routes
from deployments.caller import ProviderCaller
from deployments.console import ConsoleData
from deployments.dispatch import LocalDispatch, RemoteDispatch
from deployments.http_app import openai_api
from deployments.metrics_client import MetricsClient
from deployments.planner import Planner
from deployments.reporter import OutcomeReporter
from deployments.stop import GRACEFUL_SHUTDOWN_POLL_S, ROLLOUT_SURGE_PERCENT, SHUTDOWN_MARGIN_S
from deployments.spend_gate import KEYSTORE_ERRORS, ChargedResponse, SpendGate, credit_header, me_json, top_up_amount
from deployments.caller_loss import CALLER_LOST, carried_over, failure_bytes, fresh, interrupted_record
from deployments.ingress_http import (
    SSE_HEADERS,
    handle_body,
    new_request_id,
    not_served,
    read_body,
    request_id_of,
    requested_tags,
    turn_headers,
    with_headers,
)

__all__ = ["Ingress", "ingress_deployment"]

log = logging.getLogger(__name__)

api = openai_api()
add_console_routes(api)  # /playground, /dashboard and their static files


@serve.ingress(api)
class Ingress:
    def __init__(self, config: RouterConfig, caller=None):
        self._config = config
        # ``caller``: the provider-caller deployment's handle; None when this
        # replica calls upstreams itself (``deployments.upstream_calls: ingress``).
        self._dispatch = RemoteDispatch(caller) if caller is not None else LocalDispatch(ProviderCaller(config))
        # A turn carried over from a lost caller resumes from what was forwarded (none to lose in process).
        self._resume_bytes = config.server.stream_buffer_bytes if caller is not None else 0
        self._planner = Planner(config)
        self._metrics = MetricsClient(config, self._planner.trackers)
        self._console = ConsoleData(self._metrics)
        # This replica's channel to the tracker for turns it closes itself
        # (the client left, the dispatch failed, the caller died).
        self._leases = OutcomeReporter(self._planner.trackers.report, config.deployments.report_interval_s)
        self._keys = KeyRing(config.auth)
        self._scrape = ScrapeAccess(config.metrics.scrape)
        self._cache_lookup = CacheLookup(config)
        catalog = load_catalog()
        self._model_cards = [model_card(name, catalog.get(name)) for name in config.model_groups]
        self._model_cards_by_id = {card["id"]: card for card in self._model_cards}
        self._stopping = False
        self._responding = LiveTurns()  # the turn responses this replica is sending, for a drain
        self._spend = SpendGate(config)

    @contextlib.contextmanager
    def _responding_to(self) -> Iterator[None]:
        token = object()
        self._responding.add(token)
        try:
            yield
        finally:
            self._responding.discard(token)

    async def drain(self, grace_s: float) -> dict:
        """The router is stopping (``deployments.drain``, through a Serve
        broadcast to every replica): refuse new turns from now on (503
        ``router_stopping``, with ``retry-after``); with ``upstream_calls:
        ingress``, also let this replica's own turns finish for ``grace_s``
        and stop the rest."""
        self._stopping = True
        report = await self._dispatch.drain(grace_s)
        # Responses end once their turns have (finished, or stopped by the
        # callers' drain, running alongside this one): wait for the last bytes.
        await self._responding.wait_empty(grace_s + SHUTDOWN_MARGIN_S)
        return report

    def _refuse_if_stopping(self) -> None:
        if self._stopping:
            raise RouterStopping("the router is stopping; retry the turn")

    # -- routes -----------------------------------------------------------

    @api.get("/health")
    async def health(self) -> dict:
        return {"status": "ok"}

    @api.get("/v1/models")
    async def models(self, request: Request) -> dict:
        """What this router can serve now, in OpenAI's list format; catalog
        models carry their catalog fields under ``nemo`` (never keys or URLs).
        Needs a client key unless ``auth.open_model_list``."""
        self._authenticate_model_list(request)
        return {"object": "list", "data": self._model_cards}

    @api.get("/v1/models/{model_id:path}")
    async def model(self, model_id: str, request: Request) -> dict:
        """One model of ``/v1/models`` (the ``openai`` client's
        ``models.retrieve``), with the same authentication; 404
        ``model_not_found`` for any other id."""
        self._authenticate_model_list(request)
        card = self._model_cards_by_id.get(model_id)
        if card is None:
            raise ModelNotFound(f"The model '{model_id[:200]}' does not exist or is not served by this router", param="model")
        return card

    def _authenticate_model_list(self, request: Request) -> None:
        if not self._config.auth.open_model_list:
            self._keys.authenticate(request.headers.get("authorization"))

    @api.api_route("/v1/completions", methods=["GET", "POST"])
    async def completions(self) -> Response:
        raise not_served("/v1/completions")

    @api.api_route("/v1/embeddings", methods=["GET", "POST"])
    async def embeddings(self) -> Response:
        raise not_served("/v1/embeddings")

    @api.get("/v1/metrics")
    async def metrics(self, request: Request) -> dict:
        """Rolling p50/p99 TTFT and total latency, error rate and turns per
        minute, per model group and endpoint, merged across replicas."""
        self._keys.authenticate_admin(request.headers.get("authorization"))
        return await self._metrics.snapshot(request.query_params.get("window_s"))

    @api.get("/metrics")
    async def prometheus(self, request: Request) -> Response:
        """Prometheus exposition (``nemo_turnlog.prometheus``), classic text
        or OpenMetrics by the ``Accept`` header: totals since the hub
        started, and the tracker's in-flight and breaker gauges. The admin
        key, the scrape key or a scrape network (``metrics.scrape``)."""
        headers = request.headers
        peer = request.client.host if request.client else None
        # Every header line, in order: a proxy may append a line rather than extend the first.
        forwarded_for = ", ".join(headers.getlist("x-forwarded-for")) or None
        if not self._scrape.admits(headers.get("authorization"), peer, forwarded_for):
            self._keys.authenticate_admin(headers.get("authorization"))
        body, content_type = await self._metrics.exposition(headers.get("accept"))
        return Response(body, headers={"content-type": content_type})

    @api.get("/v1/console/{view}")
    async def console_view(self, view: str, request: Request) -> Response:  # the dashboard's data: deployments.console.dashboard
        self._keys.authenticate_admin(request.headers.get("authorization"))
        return await self._console.view(view, request.query_params)

    @api.get("/v1/me")
    async def me(self, request: Request) -> dict:
        """The calling key: its name, models, limits and, for a key with a
        credit or a budget, what is left and what it spent this period."""
        key = self._keys.authenticate(request.headers.get("authorization"))
        try:
            allowance = await self._spend.me(key)
        except KEYSTORE_ERRORS:
            raise StarletteHTTPException(503, "the keystore is not reachable; try again") from None
        return me_json(key, allowance)

    @api.post("/v1/keys/{name}/credit")
    async def top_up(self, name: str, request: Request) -> dict:
        """Admin: add ``{"amount_usd": x}`` to a key's credit (stored beside
        the turn log, replayed on start). The key's standing after it."""
        self._keys.authenticate_admin(request.headers.get("authorization"))
        amount = top_up_amount(await read_body(request, self._config.server))
        try:
            allowance = await self._spend.top_up(name, amount)
        except KEYSTORE_ERRORS:
            raise StarletteHTTPException(503, "the top-up could not be stored; nothing was added") from None
        if allowance is None:
            raise StarletteHTTPException(404, f"no key named {name!r} has a credit_usd to top up")
        return {"object": "api_key.credit", "name": name} | allowance.as_json()

    @api.get("/v1/routing")
    async def routing(self, request: Request) -> dict:
        self._keys.authenticate_admin(request.headers.get("authorization"))
        return {"endpoints": await self._planner.trackers.snapshot()}

    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        received_at = time.time()
        self._refuse_if_stopping()
        key = self._keys.authenticate(request.headers.get("authorization"))  # before reading the body
        if not is_json_content_type(request.headers.get("content-type")):
            raise UnsupportedMediaType("the request body must be JSON (content-type: application/json)")
        body = await read_body(request, self._config.server)
        chat, raw = parse_chat_request(body)
        notes = tuple(drop_client_overrides(raw))  # before the cache key and anything upstream
        conversation, conversation_notes = conversation_of(
            request.headers.get(CONVERSATION_HEADER), request.headers.get(CONVERSATION_TURN_HEADER), raw
        )
        notes += tuple(conversation_notes)
        self._keys.authorize(key, chat.model)
        await self._spend.within_rate_limit(key)
        allowance = await self._spend.admit(key)  # 429 insufficient_quota; no actor call on a known key
        spend_headers = credit_header(key, allowance)
        tags = requested_tags(request.headers.get("x-nemo-tags"), raw)
        request_id = request_id_of(request)
        ck, cached = await self._cache_lookup(raw, tags, key)
        if cached is not None:
            return with_headers(self._replay(cached, chat, request_id, received_at, key, tags, conversation), spend_headers)
        turn, plan_s, guard = await self._prepare(
            chat, raw, tags, request_id, received_at, key.key_id, cache_key=ck, notes=notes, conversation=conversation
        )
        cache_header = {"x-nemo-cache": "miss" if ck else "bypass", **spend_headers}
        if chat.stream:
            return with_headers(await self._stream(turn, plan_s, guard), cache_header)
        return with_headers(await self._complete(turn, plan_s, guard), cache_header)

    def _guard(self, turn: TurnRequest, generator=None) -> TurnGuard:
        """The ingress's hold on the turn's leases; closing it also cancels
        the caller's stream, if there is one."""
        return TurnGuard(turn.turn_id, self._leases.add, generator.cancel if generator is not None else None)

    def _replay(self, entry: CachedTurn, chat, request_id: str, received_at: float, key: KeyInfo, tags, conversation) -> Response:
        """Answer from the cache, and log the turn as a cache hit."""
        completion_id = f"chatcmpl-cache-{uuid.uuid4().hex[:24]}"
        headers = {"x-nemo-cache": "hit", "x-nemo-endpoint": entry.endpoint or "cache"}
        conversation_id = conversation.id if conversation is not None else None
        self._dispatch.record(cache_hit_record(entry, chat, request_id, received_at, key.key_id, tags, conversation_id))
        if chat.stream:
            pieces = replay_sse(entry, chat.include_usage, completion_id=completion_id)
            return StreamingResponse(iter(pieces), media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
        return JSONResponse(replay_completion(entry, completion_id=completion_id), headers=headers)

    # -- Python handle calls -----------------------------------------------
    # handle = serve.get_app_handle("nemo-router")
    # handle.chat.remote({...}).result()                      -> chat.completion dict
    # async for chunk in handle.options(stream=True).chat_stream.remote({...})  -> chunk dicts
    # Same validation, routing, failover and turn log as HTTP; errors raise
    # the router's typed errors (``RouterError`` subclasses).

    async def chat(self, body: dict, *, tags: tuple[str, ...] = (), request_id: str | None = None) -> dict:
        self._refuse_if_stopping()
        chat, raw, notes, conversation = handle_body(body, stream=False)
        turn, _, guard = await self._prepare(
            chat, raw, requested_tags(None, raw, tags), request_id or new_request_id(), time.time(), notes=notes, conversation=conversation
        )
        result = await self._complete_once(turn, guard)
        if isinstance(result, TurnFailure):
            raise TurnFailed(result.http_status, result.error)
        return json.loads(result[1])

    async def chat_stream(self, body: dict, *, tags: tuple[str, ...] = (), request_id: str | None = None):
        self._refuse_if_stopping()
        chat, raw, notes, conversation = handle_body(body, stream=True)
        turn, _, guard = await self._prepare(
            chat, raw, requested_tags(None, raw, tags), request_id or new_request_id(), time.time(), notes=notes, conversation=conversation
        )
        head, pieces = await self._open_stream(turn, guard)
        if isinstance(head, TurnFailure):
            raise TurnFailed(head.http_status, head.error)
        decoder = SSEDecoder()
        async for item in pieces:
            if type(item) is not bytes:
                continue
            for event in decoder.feed(item):
                if event.data and event.data != DONE_DATA:
                    yield json.loads(event.data)

    async def _prepare(
        self,
        chat,
        raw: dict,
        tags: tuple[str, ...],
        request_id: str,
        received_at: float,
        api_key_id: str | None = None,
        cache_key: str | None = None,
        notes: tuple[str, ...] = (),
        conversation: Conversation | None = None,
    ) -> tuple[TurnRequest, float, TurnGuard]:
        """Validate the model and tags, plan with the tracker: the turn to
        run, and the ingress's guard on its leases (made before the plan is
        asked for, so a client leaving mid-plan still closes the turn)."""
        if chat.model not in self._config.model_groups:
            raise ModelNotFound(f"The model '{chat.model}' does not exist or is not served by this router", param="model")
        has_tools = bool(chat.tools)
        # A clear 400 before any Ray call (tags, tools, n > 1 on one-choice providers).
        check_eligible(self._config, chat.model, tags, has_tools=has_tools, choices=chat.choices)
        plan_start = time.perf_counter()
        turn_id = new_turn_id()
        guard = TurnGuard(turn_id, self._leases.add)
        try:
            ref = (api_key_id, conversation.id, conversation.client_turn) if conversation is not None else None
            plan, reserved = await self._planner.plan(
                chat.model, tags=tags, has_tools=has_tools, choices=chat.choices, stream=chat.stream, turn_id=turn_id,
                conversation=ref,
            )
        except BaseException:
            guard.close()
            raise
        plan_s = time.perf_counter() - plan_start
        turn = TurnRequest(
            request_id=request_id,
            group=chat.model,
            endpoints=plan.endpoints,
            max_attempts=plan.max_attempts,
            body=raw,
            stream=chat.stream,
            include_usage=chat.include_usage,
            received_at=received_at,
            api_key_id=api_key_id,
            tags=tags,
            store_messages=self._config.turn_log.store_messages,
            cache_key=cache_key,
            hedge_after_s=plan.hedge_after_s,
            request_error_endpoints=plan.request_error_endpoints,
            reserved=reserved,
            turn_id=turn_id,
            notes=notes,
            conversation_id=conversation.id if conversation is not None else None,
            conversation_turn=plan.conversation_turn,
            affinity=plan.affinity,
        )
        return turn, plan_s, guard

    # -- helpers ------------------------------------------------------------

    async def _stream(self, turn: TurnRequest, plan_s: float, guard: TurnGuard) -> Response:
        dispatched = time.perf_counter()
        head, pieces = await self._open_stream(turn, guard)
        if isinstance(head, TurnFailure):
            return JSONResponse(head.error, status_code=head.http_status)
        headers = {**SSE_HEADERS, **turn_headers(turn, head, plan_s, time.perf_counter() - dispatched)}
        return StreamingResponse(pieces, media_type="text/event-stream", headers=headers)

    async def _open_stream(self, turn: TurnRequest, guard: TurnGuard):
        """Dispatch a streamed turn and wait for its first item: a
        ``TurnFailure``, or a ``TurnHead`` and the stream of bytes to forward."""
        turn, guard, (generator, head) = await self._dispatched(turn, guard, self._first_item)
        if isinstance(head, TurnFailure):
            guard.settle()  # the caller's turn ended, and reported, with this failure
            return head, None
        return head, self._relay(turn, head, generator, guard)

    async def _first_item(self, turn: TurnRequest, guard: TurnGuard):
        generator = self._dispatch.stream(turn)
        guard.on_close = generator.cancel
        return generator, await generator.__anext__()

    async def _dispatched(self, turn: TurnRequest, guard: TurnGuard, send):
        """``await send(turn, guard)``, with the turn and guard it ended with.
        A caller lost before anything reached the client is replaced once
        (the turn again, under a new id); any other failure closes the turn."""
        for attempt in range(2):
            try:
                return turn, guard, await send(turn, guard)
            except CALLER_LOST:
                guard.close()
                if attempt:
                    raise
                log.warning("provider-caller lost before the first token; dispatching the turn again", exc_info=True)
                turn = fresh(turn)
                guard = self._guard(turn)
            except BaseException:
                guard.close()
                raise
        raise AssertionError("unreachable")

    async def _relay(self, turn: TurnRequest, head: TurnHead, generator, guard: TurnGuard):
        """Pass each piece on as it arrives. A client that goes away cancels
        the caller's turn (which closes the upstream connection); a caller
        lost mid-stream hands the turn to another caller, once, from exactly
        what the client has, or ends it with an SSE error event and a record."""
        # What was forwarded, kept (by reference) to carry the turn over if
        # its caller is lost, up to ``server.stream_buffer_bytes``: a longer
        # stream is not carried over (a voice reply is a few KiB), so what a
        # turn holds here stays bounded whatever the reply's length.
        forwarded: list[bytes] | None = [] if self._resume_bytes else None
        kept_bytes, resumed, done_sent = 0, False, False
        responding = object()  # in the replica's count of responses being sent, for a drain
        self._responding.add(responding)
        try:
            while True:
                try:
                    async for piece in generator:
                        if type(piece) is not bytes:
                            if type(piece) is TurnSettled:
                                self._spend.charge(turn, piece.cost_usd)
                            piece = failure_bytes(piece)
                            if not piece:
                                continue
                        if forwarded is not None:
                            kept_bytes += len(piece)
                            if kept_bytes <= self._resume_bytes:
                                forwarded.append(piece)
                            else:
                                forwarded = None
                        done_sent = piece.endswith(DONE_EVENT)
                        yield piece
                    guard.settle()
                    return
                except CALLER_LOST:
                    guard.close()  # releases what the lost caller held
                    if done_sent:  # the client has the whole turn, and the caller its record
                        return
                    resume = None if resumed or forwarded is None else resume_point(forwarded)
                    if resume is None:
                        log.warning("provider-caller lost mid-stream; ending the turn with an error event", exc_info=True)
                        self._dispatch.record(interrupted_record(turn, head))
                        yield encode_json(TurnInterrupted("the router lost the process serving this turn").to_openai())
                        yield DONE_EVENT
                        return
                    log.warning("provider-caller lost mid-stream; carrying the turn over to another", exc_info=True)
                    turn, resumed = carried_over(turn, resume), True
                    generator = self._dispatch.stream(turn)
                    guard = self._guard(turn, generator)
        finally:
            guard.close()  # the client left, or anything else: a no-op once settled
            self._responding.discard(responding)

    async def _complete(self, turn: TurnRequest, plan_s: float, guard: TurnGuard) -> Response:
        dispatched = time.perf_counter()
        with self._responding_to():
            result = await self._complete_once(turn, guard)
        if isinstance(result, TurnFailure):
            return JSONResponse(result.error, status_code=result.http_status)
        head, payload = result
        headers = turn_headers(turn, head, plan_s, time.perf_counter() - dispatched)
        # A metered key's charge goes out once the reply has been sent.
        charge = self._spend.charge_after_reply(turn, head.cost_usd)
        return ChargedResponse(payload, media_type="application/json", headers=headers, background=charge)

    async def _complete_once(self, turn: TurnRequest, guard: TurnGuard):
        """A non-streamed turn (a lost caller replaced once, as for streams)."""
        _, guard, result = await self._dispatched(turn, guard, lambda turn, _: self._dispatch.complete(turn))
        guard.settle()
        return result


def ingress_deployment(config: RouterConfig):
    options = config.deployments
    return serve.deployment(
        Ingress,
        name="Ingress",
        **replica_options(options.ingress_replicas, options.ingress_autoscaling),
        max_ongoing_requests=options.ingress_max_ongoing_requests,
        ray_actor_options={"num_cpus": 0, "resources": dict(options.ingress_resources)},
        # When Serve itself stops a replica (serve deploy, serve shutdown),
        # its turns in flight get the same grace as a local stop's drain.
        graceful_shutdown_timeout_s=config.server.stop_grace_s + SHUTDOWN_MARGIN_S,
        graceful_shutdown_wait_loop_s=GRACEFUL_SHUTDOWN_POLL_S,
        max_surge_percent=ROLLOUT_SURGE_PERCENT,  # a redeploy starts replacements first
        # Serve's per-request access log costs CPU on every turn; the turn
        # log records every turn already.
        logging_config={"enable_access_log": False},
    )
