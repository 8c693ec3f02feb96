"""The network boundary to upstream providers: one pooled client per
replica, and the translation of the client's exceptions into the router's
own (``router.errors``), done once, at the boundary.

``upstream_pool`` picks the client (``deployments.upstream_client``):
aiohttp by default (``deployments.upstream_aiohttp``, the cheaper one per
streamed piece), or httpx (``HttpxUpstreamPool``, here). Both give the same
contract: ``open`` (a 2xx response, or a typed error), ``chunks``, ``read``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

import httpx

from router.config import EndpointConfig, TimeoutConfig
from router.errors import UpstreamConnectError, UpstreamDisconnected, UpstreamError, UpstreamTimeout
from router.providers import ProviderCodec

__all__ = ["HttpxUpstreamPool", "MAX_ERROR_BODY_BYTES", "request_headers", "resolve_api_keys", "translate", "upstream_pool"]

MAX_ERROR_BODY_BYTES = 16_384


def resolve_api_keys(endpoints: list[EndpointConfig], environ: Mapping[str, str]) -> dict[str, str]:
    """Endpoint name -> API key, read from the environment once at start-up."""
    keys: dict[str, str] = {}
    for endpoint in endpoints:
        if endpoint.api_key_env and environ.get(endpoint.api_key_env):
            keys[endpoint.name] = environ[endpoint.api_key_env]
    return keys


def request_headers(codec: ProviderCodec, api_key: str | None) -> dict[str, str]:
    """What every upstream request carries, whichever client sends it."""
    return {
        "accept": "text/event-stream, application/json",
        # A compressed stream would have to be decompressed before any
        # token could be forwarded.
        "accept-encoding": "identity",
        **codec.headers(api_key),
    }


def upstream_pool(client: str, api_keys: Mapping[str, str]):
    """The pooled upstream client named by ``deployments.upstream_client``."""
    if client == "httpx":
        return HttpxUpstreamPool(api_keys)
    from deployments.upstream_aiohttp import AiohttpUpstreamPool

    return AiohttpUpstreamPool(api_keys)


class HttpxUpstreamPool:
    """Keeps connections to every upstream alive across turns (HTTP keep-alive),
    so a turn pays no TCP/TLS set-up."""

    def __init__(self, api_keys: Mapping[str, str], *, max_connections: int = 2000):
        self._api_keys = dict(api_keys)
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            timeout=None,  # every request carries its own timeouts
        )

    @contextlib.asynccontextmanager
    async def open(
        self, endpoint: EndpointConfig, codec: ProviderCodec, body: bytes, timeouts: TimeoutConfig, *, stream: bool
    ) -> AsyncIterator[httpx.Response]:
        """POST the chat-completions body and yield the response once its
        status is known to be 2xx; error statuses raise ``UpstreamStatusError``.

        Reading the body is the caller's job, inside this context; httpx
        errors raised while it reads are translated too.
        """
        request = self._client.build_request(
            "POST",
            endpoint.base_url.rstrip("/") + codec.path(endpoint.model, stream),
            content=body,
            headers=request_headers(codec, self._api_keys.get(endpoint.name)),
            timeout=httpx.Timeout(max(timeouts.first_token_s, timeouts.stall_s), connect=timeouts.connect_s),
        )
        response: httpx.Response | None = None
        try:
            response = await self._client.send(request, stream=True)
            if response.status_code >= 400:
                error_body = await _read_capped(response)
                raise codec.error_from_status(
                    response.status_code, error_body, response.headers.get("retry-after"), endpoint=endpoint.name
                )
            yield response
        except httpx.HTTPError as exc:
            raise translate(exc, endpoint.name) from exc
        finally:
            if response is not None:
                await response.aclose()

    @staticmethod
    async def chunks(response: httpx.Response, endpoint: str) -> AsyncIterator[bytes]:
        """The response body as it arrives, one piece per network read,
        with httpx's read errors translated."""
        try:
            async for raw in response.aiter_raw():
                yield raw
        except httpx.HTTPError as exc:
            raise translate(exc, endpoint) from exc

    @staticmethod
    async def read(response: httpx.Response, endpoint: str) -> bytes:
        try:
            return await response.aread()
        except httpx.HTTPError as exc:
            raise translate(exc, endpoint) from exc

    async def aclose(self) -> None:
        await self._client.aclose()


def translate(exc: httpx.HTTPError, endpoint: str) -> UpstreamError:
    """The most specific router error for an httpx failure."""
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return UpstreamTimeout(f"upstream timed out ({type(exc).__name__})", endpoint=endpoint)
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return UpstreamConnectError(f"cannot connect to upstream ({type(exc).__name__})", endpoint=endpoint)
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return UpstreamDisconnected(f"upstream closed the connection ({type(exc).__name__})", endpoint=endpoint)
    return UpstreamConnectError(f"upstream transport error ({type(exc).__name__})", endpoint=endpoint)


async def _read_capped(response: httpx.Response) -> bytes:
    data = b""
    async for part in response.aiter_bytes():
        data += part
        if len(data) >= MAX_ERROR_BODY_BYTES:
            break
    return data
