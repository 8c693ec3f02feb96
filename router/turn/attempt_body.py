"""The upstream body of one attempt, in its endpoint's provider's format.

The provider codec's notes (parameters dropped or changed on the way) are
kept on the turn for its record, once each. A request this provider cannot
express fails this link only (``UpstreamCannotServe``): another provider
down the chain may serve it.
"""

from __future__ import annotations

from typing import Any

from router.config import EndpointConfig
from router.errors import InvalidRequest, UpstreamCannotServe
from router.providers import ProviderCodec
from router.turn.state import TurnState

__all__ = ["attempt_body"]


def attempt_body(turn: TurnState, codec: ProviderCodec, request: dict[str, Any], endpoint: EndpointConfig, *, stream: bool) -> bytes:
    try:
        body, notes = codec.request_body(request, endpoint.model, stream)
    except InvalidRequest as exc:
        raise UpstreamCannotServe(f"{endpoint.provider}: {exc.message}", endpoint=endpoint.name) from exc
    for note in notes:
        if note not in turn.notes:
            turn.notes.append(note)
    return body
