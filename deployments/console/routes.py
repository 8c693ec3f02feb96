"""The console's routes on the ingress's FastAPI app: ``/playground`` and
the static files its page loads (``/console/<file>``, relative to the page,
so they work under any route prefix). Plain functions: a static page needs
nothing of the ingress replica; the page itself talks only to the router's
``/v1`` routes, with the client key the user enters."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments.console.assets import page_response

__all__ = ["add_console_routes"]


def add_console_routes(api: FastAPI) -> None:
    @api.get("/playground")
    async def playground() -> Response:
        """The playground page (no key needed to load it)."""
        return page_response("playground.html")

    @api.get("/console/{name}")
    async def console_asset(name: str) -> Response:
        """A console script or stylesheet, by its plain file name."""
        try:
            return page_response(name)
        except KeyError:
            raise StarletteHTTPException(404, f"no console file {name[:100]!r}") from None
