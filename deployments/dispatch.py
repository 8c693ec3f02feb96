"""How the ingress hands a turn to the code that calls the upstream.

``RemoteDispatch`` (the design card's shape, the default): the turn goes to
a provider-caller replica through a Serve handle and its stream comes back
item by item across the deployment boundary. ``LocalDispatch``
(``deployments.upstream_calls: ingress``): the ingress replica runs the
same ``ProviderCaller`` in process, so no item crosses a boundary; it trades
the callers' separate scaling for about 2-3 ms less per turn at idle and
roughly half the CPU per streamed turn (benchmarks/compare.py). Both give
the same items in the same order: a ``TurnHead`` or ``TurnFailure``, then
SSE bytes (``router.turn.runner``).
"""

from __future__ import annotations

from deployments.coalesce import CoalescingStream

__all__ = ["LocalDispatch", "RemoteDispatch"]


class RemoteDispatch:
    def __init__(self, caller_handle):
        self._caller = caller_handle
        self._stream_caller = caller_handle.options(stream=True)

    def stream(self, turn):
        """Serve's response generator: async-iterable, ``cancel()`` ends the
        caller's turn (and closes its upstream connection)."""
        return self._stream_caller.stream_turn.remote(turn)

    async def complete(self, turn):
        return await self._caller.complete_turn.remote(turn)

    def record(self, record) -> None:
        self._caller.record.remote(record)

    async def drain(self, grace_s: float) -> dict:
        """The callers are drained by the stop itself (``deployments.drain``),
        every replica at once; this ingress only refuses new turns."""
        return {}


class LocalDispatch:
    def __init__(self, provider_caller):
        self._caller = provider_caller

    def stream(self, turn) -> CoalescingStream:
        """The turn in a task of its own, read with coalescing; ``cancel()``
        ends it as the remote stream's does."""
        return self._caller.open_stream(turn)

    async def complete(self, turn):
        return await self._caller.complete_turn(turn)

    def record(self, record) -> None:
        self._caller.record(record)

    async def drain(self, grace_s: float) -> dict:
        return await self._caller.drain(grace_s)
