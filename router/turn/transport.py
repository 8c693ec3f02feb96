"""The one seam between a turn and the network: ``UpstreamTransport``.

The turn loop (``router.turn.runner``) sends every upstream request through
this interface and never touches a network library. The real transports are
the pooled aiohttp and httpx clients in ``deployments`` (each translates its
library's exceptions into the router's own, once, there); tests also use the
in-memory ``router.turn.memory_transport.MemoryTransport``, like
``httpx.MockTransport``.

The contract, for every transport:

- ``open(endpoint, codec, body, timeouts, stream=...)`` is an async context
  manager. It sends ``body`` (already in the provider's format) to the
  endpoint and yields a response once its status is known to be 2xx; an
  error status raises ``codec.error_from_status(...)`` (classified there,
  once), a transport failure the matching ``UpstreamError``. Leaving the
  context closes the response; one left unfinished is not reused.
- ``chunks(response, endpoint)`` yields the body as it arrives, one piece
  per network read, and raises ``UpstreamError`` subclasses only.
- ``read(response, endpoint)`` reads the whole body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from router.config import EndpointConfig, TimeoutConfig
from router.providers import ProviderCodec

__all__ = ["UpstreamTransport"]


class UpstreamTransport(Protocol):
    def open(
        self, endpoint: EndpointConfig, codec: ProviderCodec, body: bytes, timeouts: TimeoutConfig, *, stream: bool
    ) -> AbstractAsyncContextManager[Any]: ...

    def chunks(self, response: Any, endpoint: str) -> AsyncIterator[bytes]: ...

    async def read(self, response: Any, endpoint: str) -> bytes: ...
