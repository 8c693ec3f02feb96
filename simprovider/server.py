"""The Starlette app: OpenAI-compatible routes per profile, plus the admin API.

Routes:
    POST /{profile}/v1/chat/completions   (and /v1/... for `default`)
    GET  /{profile}/v1/models
    GET  /_sim/profiles         -> {name: behavior}
    PUT  /_sim/profiles/{name}  partial Behavior fields, merged
    GET  /_sim/stats            -> {name: {"requests", "in_flight"}}
    POST /_sim/reset            start-up behaviours, zero counters
    GET  /health
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .behavior import Behavior, merge_behavior
from .playback import BufferedCompletion, Plan, StreamedCompletion
from .profiles import DEFAULT_PROFILE, ProfileRegistry
from .wire import InvalidRequest, error_body, models_body, parse_completion_request

__all__ = ["BEHAVIOR_HEADER", "PROFILE_HEADER", "build_app"]

BEHAVIOR_HEADER = "x-sim-behavior"
"""Request header: a JSON object of Behavior fields for this request only."""

PROFILE_HEADER = "x-sim-profile"
"""Response header naming the profile that answered."""


def _error(status: int, message: str, error_type: str, code: str | None = None,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, error_type, code), status_code=status, headers=headers)


_HTTP_FAILURES: dict[int, tuple[str, str, str]] = {
    # status: (message, type, code), worded like OpenAI's own errors
    500: ("The server had an error while processing your request.", "server_error", "internal_error"),
    503: ("The engine is currently overloaded, please try again later.", "server_error", "overloaded"),
    429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
}


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
        profile = self._profile(request)
        self.registry.start(profile)
        try:
            response = await self._completion(request, profile)
        except BaseException:
            self.registry.finish(profile)  # e.g. ClientDisconnect while reading the body
            raise
        return _Finished(response, self.registry, profile)

    async def _completion(self, request: Request, profile: str) -> ASGIApp:
        arrived_s = asyncio.get_running_loop().time()
        try:
            parsed = parse_completion_request(await request.body())
            behavior = self._behavior_for(request, profile)
        except (InvalidRequest, ValidationError) as exc:
            return _error(400, str(exc), "invalid_request_error", headers={PROFILE_HEADER: profile})
        extra_headers = [(PROFILE_HEADER.encode(), profile.encode())]
        if behavior.http_status is not None:
            return self._http_failure(behavior, profile)
        plan = Plan(parsed, behavior, extra_headers, arrived_s)
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

    def _http_failure(self, behavior: Behavior, profile: str) -> JSONResponse:
        status = behavior.http_status
        assert status is not None
        message, error_type, code = _HTTP_FAILURES[status]
        headers = {PROFILE_HEADER: profile}
        if behavior.retry_after_s is not None and status in (429, 503):
            headers["retry-after"] = f"{behavior.retry_after_s:g}"
        return _error(status, message, error_type, code, headers)

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
        Route("/v1/models", endpoints.models, methods=["GET"]),
        Route("/{profile}/v1/chat/completions", endpoints.chat_completions, methods=["POST"]),
        Route("/{profile}/v1/models", endpoints.models, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_exception})
