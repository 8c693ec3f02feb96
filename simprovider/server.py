"""The Starlette app: OpenAI, Anthropic and Gemini routes per profile, plus
the admin API.

Routes (each also without the `/{profile}` prefix, for `default`):
    POST /{profile}/v1/chat/completions                    OpenAI
    POST /{profile}/v1/messages                            Anthropic Messages
    POST /{profile}/v1beta/models/{model}:generateContent  Gemini
    POST /{profile}/v1beta/models/{model}:streamGenerateContent?alt=sse
    GET  /{profile}/v1/models
    GET  /_sim/profiles         -> {name: behavior}
    PUT  /_sim/profiles/{name}  partial Behavior fields, merged
    GET  /_sim/stats            -> {name: {"requests", "in_flight"}}
    POST /_sim/reset            start-up behaviours, zero counters
    GET  /health
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Mapping

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .anthropic_wire import parse_messages_request
from .behavior import Behavior, merge_behavior
from .formats import ANTHROPIC, GEMINI, OPENAI, WireFormat
from .gemini_wire import parse_generate_request
from .playback import BufferedCompletion, Plan, StreamedCompletion
from .profiles import DEFAULT_PROFILE, ProfileRegistry
from .request import CompletionRequest
from .wire import InvalidRequest, error_body, models_body, parse_completion_request

__all__ = ["BEHAVIOR_HEADER", "PROFILE_HEADER", "build_app"]

BEHAVIOR_HEADER = "x-sim-behavior"
"""Request header: a JSON object of Behavior fields for this request only."""

PROFILE_HEADER = "x-sim-profile"
"""Response header naming the profile that answered."""


def _error(status: int, message: str, error_type: str, code: str | None = None,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, error_type, code), status_code=status, headers=headers)


_RETRY_AFTER_STATUSES = (429, 503, 529)

_GEMINI_ACTIONS = ("generateContent", "streamGenerateContent")

Parser = Callable[[Request, bytes], CompletionRequest]


def _parse_openai(request: Request, body: bytes) -> CompletionRequest:
    return parse_completion_request(body)


def _parse_anthropic(request: Request, body: bytes) -> CompletionRequest:
    return parse_messages_request(body, request.headers)


def _parse_gemini(request: Request, body: bytes) -> CompletionRequest:
    model, _, action = request.path_params["target"].rpartition(":")
    stream = action == "streamGenerateContent"
    if stream and request.query_params.get("alt") != "sse":
        raise InvalidRequest("the simulator streams Gemini replies only with ?alt=sse")
    return parse_generate_request(body, model, stream)


class _Finished:
    """Wraps a response so the profile's in-flight count drops when it ends."""

    def __init__(self, response: ASGIApp, registry: ProfileRegistry, profile: str) -> None:
        self._response = response
        self._registry = registry
        self._profile = profile

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._response(scope, receive, send)
        finally:
            self._registry.finish(self._profile)


class _Endpoints:
    """Request handlers bound to one registry."""

    def __init__(self, registry: ProfileRegistry) -> None:
        self.registry = registry

    def _profile(self, request: Request) -> str:
        name = request.path_params.get("profile", DEFAULT_PROFILE)
        if name not in self.registry:
            raise HTTPException(404, f"unknown simulator profile '{name}'")
        return name

    async def chat_completions(self, request: Request) -> ASGIApp:
        return await self._serve(request, OPENAI, _parse_openai)

    async def messages(self, request: Request) -> ASGIApp:
        return await self._serve(request, ANTHROPIC, _parse_anthropic)

    async def generate_content(self, request: Request) -> ASGIApp:
        model, _, action = request.path_params["target"].rpartition(":")
        if not model or action not in _GEMINI_ACTIONS:
            raise HTTPException(404, f"unknown Gemini method '{request.path_params['target']}'")
        return await self._serve(request, GEMINI, _parse_gemini)

    async def _serve(self, request: Request, wire: WireFormat, parse: Parser) -> ASGIApp:
        profile = self._profile(request)
        self.registry.start(profile)
        try:
            response = await self._completion(request, profile, wire, parse)
        except BaseException:
            self.registry.finish(profile)  # e.g. ClientDisconnect while reading the body
            raise
        return _Finished(response, self.registry, profile)

    async def _completion(self, request: Request, profile: str, wire: WireFormat, parse: Parser) -> ASGIApp:
        arrived_s = asyncio.get_running_loop().time()
        try:
            parsed = parse(request, await request.body())
            behavior = self._behavior_for(request, profile)
        except (InvalidRequest, ValidationError) as exc:
            return JSONResponse(wire.invalid(str(exc)), status_code=400, headers={PROFILE_HEADER: profile})
        extra_headers = [(PROFILE_HEADER.encode(), profile.encode())]
        if behavior.http_status is not None:
            return self._http_failure(behavior, profile, wire, request)
        if behavior.prefix_cache_ttl_s is not None and parsed.prefixes:
            cache = self.registry.prefix_cache(profile)
            parsed = dataclasses.replace(parsed, cached_tokens=cache.serve(parsed.prefixes, arrived_s, behavior.prefix_cache_ttl_s))
        others = self.registry.in_flight(profile) - 1  # this request was counted on arrival
        plan = Plan(parsed, behavior, extra_headers, arrived_s, wire, others_in_flight=max(0, others))
        return StreamedCompletion(plan) if parsed.stream else BufferedCompletion(plan)

    def _behavior_for(self, request: Request, profile: str) -> Behavior:
        override = request.headers.get(BEHAVIOR_HEADER)
        if override is None:
            return self.registry.take(profile)
        try:
            patch = json.loads(override)
        except ValueError as exc:
            raise InvalidRequest(f"{BEHAVIOR_HEADER} is not valid JSON: {exc}") from exc
        if not isinstance(patch, dict):
            raise InvalidRequest(f"{BEHAVIOR_HEADER} must be a JSON object")
        # An override is for this request only, so it leaves the profile's
        # failure_count untouched.
        return merge_behavior(self.registry.peek(profile), patch)

    def _http_failure(self, behavior: Behavior, profile: str, wire: WireFormat, request: Request) -> JSONResponse:
        status = behavior.http_status
        assert status is not None
        headers = {PROFILE_HEADER: profile}
        if behavior.retry_after_s is not None and status in _RETRY_AFTER_STATUSES:
            headers["retry-after"] = f"{behavior.retry_after_s:g}"
        body = wire.failure(status, behavior.retry_after_s)
        key = _sent_key(request)
        if status == 401 and key:
            # As real providers do, quote a masked fragment of the key that was sent.
            masked = f"{key[:12]}****{key[-7:]}" if len(key) > 19 else "****"
            body = json.loads(json.dumps(body).replace(KEY_PLACEHOLDER, masked))
        return JSONResponse(body, status_code=status, headers=headers)

    async def models(self, request: Request) -> Response:
        profile = self._profile(request)
        return JSONResponse(models_body(), headers={PROFILE_HEADER: profile})

    async def list_profiles(self, request: Request) -> Response:
        return JSONResponse(self.registry.behaviors_dump())

    async def put_profile(self, request: Request) -> Response:
        try:
            patch = json.loads(await request.body())
        except ValueError as exc:
            return _error(400, f"body is not valid JSON: {exc}", "invalid_request_error")
        if not isinstance(patch, dict):
            return _error(400, "body must be a JSON object of Behavior fields", "invalid_request_error")
        try:
            behavior = self.registry.update(request.path_params["name"], patch)
        except ValidationError as exc:
            return _error(400, str(exc), "invalid_request_error")
        return JSONResponse(behavior.model_dump())

    async def stats(self, request: Request) -> Response:
        return JSONResponse(self.registry.stats_dump())

    async def reset(self, request: Request) -> Response:
        self.registry.reset()
        return JSONResponse({"status": "reset"})

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error_type = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return _error(exc.status_code, exc.detail, error_type)


def build_app(profiles: Mapping[str, Behavior] | None = None) -> Starlette:
    """The simulator as an ASGI app.

    Args:
        profiles: Start-up behaviours by profile name; `default` is added
            with `Behavior()` when missing. `POST /_sim/reset` returns here.
    """
    endpoints = _Endpoints(ProfileRegistry(profiles))
    routes = [
        Route("/health", endpoints.health, methods=["GET"]),
        Route("/_sim/profiles", endpoints.list_profiles, methods=["GET"]),
        Route("/_sim/profiles/{name}", endpoints.put_profile, methods=["PUT"]),
        Route("/_sim/stats", endpoints.stats, methods=["GET"]),
        Route("/_sim/reset", endpoints.reset, methods=["POST"]),
        Route("/v1/chat/completions", endpoints.chat_completions, methods=["POST"]),
        Route("/v1/messages", endpoints.messages, methods=["POST"]),
        Route("/v1beta/models/{target}", endpoints.generate_content, methods=["POST"]),
        Route("/v1/models", endpoints.models, methods=["GET"]),
        Route("/{profile}/v1/chat/completions", endpoints.chat_completions, methods=["POST"]),
        Route("/{profile}/v1/messages", endpoints.messages, methods=["POST"]),
        Route("/{profile}/v1beta/models/{target}", endpoints.generate_content, methods=["POST"]),
        Route("/{profile}/v1/models", endpoints.models, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_exception})


KEY_PLACEHOLDER = "sk-sim-REVOKED****ab12"
"""Where a simulated 401 message quotes the key it was sent (masked)."""


def _sent_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip() or None
    return request.headers.get("x-api-key") or request.headers.get("x-goog-api-key") or request.query_params.get("key")
