"""Where a streamed turn stands from the client's side: what the ingress has
forwarded, read back when the caller serving the turn is lost.

The ingress keeps each forwarded piece (a list append per piece, nothing
parsed on the hot path). Only when the caller dies mid-stream does it read
them back here, to carry the turn over to another caller from exactly what
the client has (``router.turn.state.Resume``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from router.sse import DONE_DATA, SSEDecoder
from router.turn.state import Resume

__all__ = ["resume_point"]


def resume_point(forwarded: Iterable[bytes]) -> Resume | None:
    """The text and chunk id the client was handed; None when the turn
    cannot be carried over (the stream was complete, or it was a tool call
    or had several choices, which a continuation cannot splice)."""
    decoder = SSEDecoder()
    parts: list[str] = []
    chunk_id: str | None = None
    for piece in forwarded:
        for event in decoder.feed(piece):
            if event.data is None:
                continue
            if event.data == DONE_DATA:
                return None
            chunk = json.loads(event.data)
            chunk_id = chunk_id or chunk.get("id")
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                if delta.get("tool_calls") or choice.get("index"):
                    return None
                if delta.get("content"):
                    parts.append(delta["content"])
    return Resume("".join(parts), chunk_id)
