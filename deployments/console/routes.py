"""The console's page routes on the ingress's FastAPI app: ``/playground``,
``/dashboard`` and the static files their pages load (``/console/<file>``,
relative to the page, so they work under any route prefix). Plain
functions: a static page needs nothing of the ingress replica and holds
nothing; the pages talk only to the router's ``/v1`` routes, with the key
the user enters (the dashboard's data, ``/v1/console/...``, needs the admin
key)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response

from deployments.console.assets import console_file

__all__ = ["add_console_routes"]


def add_console_routes(api: FastAPI) -> None:
    @api.get("/playground")
    async def playground() -> Response:
        """The playground page (no key needed to load it)."""
        return console_file("playground.html")

    @api.get("/dashboard")
    async def dashboard() -> Response:
        """The dashboard page: a login form until the admin key is entered."""
        return console_file("dashboard.html")

    @api.get("/console/{name}")
    async def console_asset(name: str) -> Response:
        """A console script or stylesheet, by its plain file name; 404 otherwise."""
        return console_file(name)
