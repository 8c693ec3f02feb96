"""The FastAPI app behind the ingress, and how it renders every error:
OpenAI's error object with the right status, never a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from router.errors import RouterError

__all__ = ["openai_api"]

log = logging.getLogger(__name__)


def openai_api() -> FastAPI:
    api = FastAPI(title="nemo-router", docs_url=None, redoc_url=None, openapi_url=None)
    api.add_exception_handler(RouterError, _router_error)
    api.add_exception_handler(StarletteHTTPException, _http_error)
    api.add_exception_handler(Exception, _unexpected)
    return api


async def _router_error(_: Request, error: RouterError) -> JSONResponse:
    headers = error.headers()
    return JSONResponse(error.to_openai(), status_code=error.http_status, headers=headers)


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    kind = "not_found" if exc.status_code == 404 else "method_not_allowed" if exc.status_code == 405 else "http_error"
    body = {"error": {"message": str(exc.detail), "type": "invalid_request_error", "param": None, "code": kind}}
    return JSONResponse(body, status_code=exc.status_code)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error in the ingress")
    body = {"error": {"message": "internal router error", "type": "server_error", "param": None, "code": "internal_error"}}
    return JSONResponse(body, status_code=500)
