"""A metered key's streamed turn, with what it cost (``TurnSettled``) for
the ingress to charge the key.

The cost is known once the turn has ended, after the stream's last event,
``[DONE]``; but a client may hang up the moment it has ``[DONE]`` (SDKs
close the response there), which cancels the ingress's relay before it
reads anything after it. So the piece that ends with ``[DONE]`` is held
back until the turn has ended, and the cost goes first: by the time the
client has ``[DONE]``, the ingress has charged the turn. Only that last
piece waits (for the runner to finish the turn: its record, microseconds);
every other piece passes as it comes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from router.turn.state import TurnSettled

__all__ = ["settled_stream"]


def _ends_stream(item: Any) -> bool:
    return type(item) is bytes and item.rstrip().endswith(b"[DONE]")


async def settled_stream(stream: AsyncIterator[Any], cost: Callable[[], float | None]) -> AsyncIterator[Any]:
    """``stream``'s items, with ``TurnSettled(cost())`` (when it is priced)
    just before the piece that ends with ``[DONE]``, or last."""
    held = None
    async for item in stream:
        if held is not None:  # nothing should follow [DONE]; if something does, order is kept
            yield held
            held = None
        if _ends_stream(item):
            held = item
            continue
        yield item
    usd = cost()
    if usd:
        yield TurnSettled(usd)
    if held is not None:
        yield held
