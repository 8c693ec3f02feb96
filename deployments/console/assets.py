"""The console's static files (``deployments/console/static/``), read once
per process and served with a strict content security policy: the pages
load only their own scripts and styles and talk only to this router."""

from __future__ import annotations

import functools
from importlib import resources

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

__all__ = ["asset", "console_file", "page_response", "CONTENT_TYPES", "PAGE_HEADERS"]

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


@functools.cache
def asset(name: str) -> bytes:
    """A file of ``static/`` by its plain name (no paths); KeyError if none."""
    if "/" in name or "\\" in name or name.startswith(".") or not any(name.endswith(s) for s in CONTENT_TYPES):
        raise KeyError(name)
    path = resources.files(__package__).joinpath("static", name)
    if not path.is_file():
        raise KeyError(name)
    return path.read_bytes()


def page_response(name: str) -> Response:
    """A static file as a response, with the console's headers; KeyError if none."""
    body = asset(name)
    suffix = name[name.rfind(".") :]
    return Response(body, headers={"content-type": CONTENT_TYPES[suffix], **PAGE_HEADERS})


def console_file(name: str) -> Response:
    """``page_response``, or a 404 (OpenAI's error object) for any other name."""
    try:
        return page_response(name)
    except KeyError:
        raise StarletteHTTPException(404, f"no console file {name[:60]!r}") from None
