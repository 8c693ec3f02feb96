"""Serving the app with uvicorn, tuned to stay light on CPU.

uvloop + httptools, no access log, warnings only: the simulator shares a
2-core machine with the router under benchmark, so every cycle it spends
is a cycle taken from the system being measured.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Mapping

import uvicorn
import uvloop

from .behavior import Behavior
from .playback import ConnectionDrop
from .server import build_app

__all__ = ["GRACEFUL_SHUTDOWN_S", "bind_socket", "run_server"]

GRACEFUL_SHUTDOWN_S = 0.5
"""Seconds uvicorn waits for open responses on shutdown; `hang` never ends."""


class _HideSimulatedDrops(logging.Filter):
    """Drops uvicorn's "Exception in ASGI application" record for `ConnectionDrop`.

    A simulated drop is the point of the exercise, not a bug; any other
    exception is still logged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc_info = record.exc_info
        return not (exc_info and isinstance(exc_info[1], ConnectionDrop))


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on host:port; port 0 picks a free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def run_server(
    sock: socket.socket,
    profiles: Mapping[str, Behavior] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve the simulator on `sock` until SIGINT/SIGTERM; blocks.

    Args:
        sock: A bound socket (see `bind_socket`); binding first lets port 0
            work and lets the caller know the real port before serving.
        profiles: Start-up behaviours by profile name.
        on_ready: Called once, on the event loop, when accepting connections.
    """
    config = uvicorn.Config(
        build_app(profiles),
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        proxy_headers=False,  # nothing sits in front of a simulator
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    server = uvicorn.Server(config)
    # uvicorn configures its loggers when the Config is built, so the filter
    # goes on after that.
    logging.getLogger("uvicorn.error").addFilter(_HideSimulatedDrops())

    async def serve() -> None:
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        if server.started and on_ready is not None:
            on_ready()
        await serving

    # Our own runner rather than Server.run(), so that on_ready can fire once
    # the socket is accepting; same uvloop loop that Server.run() would pick.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve())
