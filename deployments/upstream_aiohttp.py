"""The network boundary to upstream providers on aiohttp: the default
upstream client (``deployments.upstream_client: aiohttp``).

Same contract as the httpx pool (``deployments.upstream``): one pooled
client per replica, ``open`` yields a response once its status is known to
be 2xx, ``chunks`` and ``read`` give its body, and aiohttp's exceptions are
translated into the router's own here, once.

Why aiohttp on the hot path: httpx reads a streamed body through httpcore
and anyio, which enter a cancel scope and a timeout per network read. In
``benchmarks/serve_floor.py`` (a bare Serve relay at concurrency 20) that
was the difference between +8 ms and +2.6 ms of added TTFT, and 124 vs 131
turns/s (README "Performance"). aiohttp is already installed with
``ray[serve]``, and is as well kept as httpx; httpx stays the client for
everything off the hot path (health probes, exporters) and one config line
away for upstream calls.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

import aiohttp

from router.config import EndpointConfig, TimeoutConfig
from router.errors import UpstreamConnectError, UpstreamDisconnected, UpstreamError, UpstreamTimeout
from router.providers import ProviderCodec

from deployments.upstream import MAX_ERROR_BODY_BYTES, request_headers

__all__ = ["AiohttpUpstreamPool", "translate_aiohttp"]


class AiohttpUpstreamPool:
    """Keeps connections to every upstream alive across turns (HTTP keep-alive),
    so a turn pays no TCP/TLS set-up. The session is made on first use:
    aiohttp binds it to the running event loop."""

    def __init__(self, api_keys: Mapping[str, str], *, max_connections: int = 2000):
        self._api_keys = dict(api_keys)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0),
                timeout=aiohttp.ClientTimeout(total=None),  # every request carries its own timeouts
                # The body is forwarded as it came; turn logs and error
                # bodies are ours to parse, never a cookie jar's.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    @contextlib.asynccontextmanager
    async def open(
        self, endpoint: EndpointConfig, codec: ProviderCodec, body: bytes, timeouts: TimeoutConfig, *, stream: bool
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST the chat-completions body and yield the response once its
        status is known to be 2xx; error statuses raise ``UpstreamStatusError``.

        Reading the body is the caller's job, inside this context (``chunks``,
        ``read``). A response left unfinished closes its connection rather
        than returning it to the pool.
        """
        headers = request_headers(codec, self._api_keys.get(endpoint.name))
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.connect_s,
            sock_connect=timeouts.connect_s,
            sock_read=max(timeouts.first_token_s, timeouts.stall_s),
        )
        url = endpoint.base_url.rstrip("/") + codec.path(endpoint.model, stream)
        response: aiohttp.ClientResponse | None = None
        try:
            response = await self._client().post(url, data=body, headers=headers, timeout=timeout)
            if response.status >= 400:
                error_body = await _read_capped(response)
                raise codec.error_from_status(
                    response.status, error_body, response.headers.get("retry-after"), endpoint=endpoint.name
                )
            yield response
        except aiohttp.ClientError as exc:
            raise translate_aiohttp(exc, endpoint.name) from exc
        finally:
            if response is not None:
                if response.content.at_eof():
                    response.release()
                else:
                    response.close()

    @staticmethod
    async def chunks(response: aiohttp.ClientResponse, endpoint: str) -> AsyncIterator[bytes]:
        """The response body as it arrives, one piece per network read,
        with aiohttp's read errors translated."""
        try:
            async for raw in response.content.iter_any():
                yield raw
        except aiohttp.ClientError as exc:
            raise translate_aiohttp(exc, endpoint) from exc

    @staticmethod
    async def read(response: aiohttp.ClientResponse, endpoint: str) -> bytes:
        try:
            return await response.read()
        except aiohttp.ClientError as exc:
            raise translate_aiohttp(exc, endpoint) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def translate_aiohttp(exc: aiohttp.ClientError, endpoint: str) -> UpstreamError:
    """The most specific router error for an aiohttp failure."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamConnectError(f"cannot connect to upstream ({type(exc).__name__})", endpoint=endpoint)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return UpstreamTimeout(f"upstream timed out ({type(exc).__name__})", endpoint=endpoint)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamConnectError(f"cannot connect to upstream ({type(exc).__name__})", endpoint=endpoint)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError)):
        return UpstreamDisconnected(f"upstream closed the connection ({type(exc).__name__})", endpoint=endpoint)
    if isinstance(exc, aiohttp.ServerConnectionError):
        return UpstreamDisconnected(f"upstream connection failed ({type(exc).__name__})", endpoint=endpoint)
    return UpstreamConnectError(f"upstream transport error ({type(exc).__name__})", endpoint=endpoint)


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    data = b""
    async for part in response.content.iter_any():
        data += part
        if len(data) >= MAX_ERROR_BODY_BYTES:
            break
    return data
