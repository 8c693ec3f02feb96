"""The dashboard's data routes (``GET /v1/console/state`` and
``GET /v1/console/turn``, admin key): the query read and checked here, the
state built in the metrics hub (``nemo_turnlog.dashboard``) with the
tracker's routing snapshot the ingress fetches first.

``/v1/console/state`` takes ``since`` (the last answer's ``cursor``),
``turns_since`` (its ``turns_cursor``), the recent-turns filter ``model``,
``endpoint``, ``status``, ``conversation`` (a prefix) and ``limit`` (rows,
1 to 500, default 200). ``/v1/console/turn?seq=N``: one recent turn with its
attempts; 404 once the hub's ring no longer holds it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from nemo_turnlog.dashboard import Since
from nemo_turnlog.recent_turns import TurnFilter
from router.errors import InvalidRequest

__all__ = ["ConsoleData", "StateQuery", "state_query", "turn_seq"]

STATUSES = ("ok", "error", "cancelled")
MAX_TEXT = 200  # a filter value's characters
MAX_LIMIT = 500
# The tracker plans every turn: however many dashboards are open on one
# ingress replica, it is asked for its snapshot at most this often.
ROUTING_MAX_AGE_S = 0.5


@dataclass(frozen=True, slots=True)
class StateQuery:
    since: Since
    turns_since: int
    turn_filter: TurnFilter
    limit: int


def state_query(params: Mapping[str, str]) -> StateQuery:
    """The state route's query; ``InvalidRequest`` (400) naming the bad one."""
    try:
        since = Since.parse(params.get("since"))
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="since") from None
    status = params.get("status") or None
    if status is not None and status not in STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}", param="status")
    return StateQuery(
        since=since,
        turns_since=_integer(params, "turns_since", 0, 0, 2**62),
        turn_filter=TurnFilter(
            model_group=_text(params, "model"), endpoint=_text(params, "endpoint"), status=status,
            conversation=_text(params, "conversation"),
        ),  # fmt: skip
        limit=_integer(params, "limit", 200, 1, MAX_LIMIT),
    )


def turn_seq(params: Mapping[str, str]) -> int:
    return _integer(params, "seq", None, 1, 2**62)


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name) or None
    if value is not None and len(value) > MAX_TEXT:
        raise InvalidRequest(f"{name} must be at most {MAX_TEXT} characters", param=name)
    return value


def _integer(params: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int:
    text = params.get(name)
    if not text:
        if default is None:
            raise InvalidRequest(f"{name} is required", param=name)
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise InvalidRequest(f"{name} must be an integer in [{low}, {high}]", param=name)
    return int(text)


class ConsoleData:
    """The routes' Ray side: ``metrics`` is the ingress's ``MetricsClient``
    (the hub's handle, 404 when metrics are off; the tracker's snapshot,
    reused for ``ROUTING_MAX_AGE_S``)."""

    def __init__(self, metrics, clock: Callable[[], float] = time.monotonic):
        self._metrics = metrics
        self._clock = clock
        self._routing: dict | None = None
        self._routing_at = -float("inf")

    async def view(self, view: str, params: Mapping[str, str]) -> Response:
        if view == "state":
            query = state_query(params)
            hub = self._metrics.hub()
            routing = await self._routing_snapshot()
            state = await hub.console_state.remote(query.since, query.turns_since, query.turn_filter, query.limit, routing)
            return _json(state)
        if view == "turn":
            seq = turn_seq(params)
            turn = await self._metrics.hub().console_turn.remote(seq)
            if turn is None:
                raise StarletteHTTPException(404, f"turn {seq} is no longer among the recent turns")
            return _json(turn)
        raise StarletteHTTPException(404, f"no console view {view[:40]!r}: state or turn")


    async def _routing_snapshot(self) -> dict | None:
        if self._clock() - self._routing_at >= ROUTING_MAX_AGE_S:
            self._routing = await self._metrics.routing_snapshot()
            self._routing_at = self._clock()
        return self._routing


def _json(body: dict) -> Response:
    # Serialized here in one call: FastAPI's encoder walks every value of a
    # dict route's answer, which for a full state (thousands of points) costs
    # many times more. The answer carries the admin's view: never cached.
    text = json.dumps(body, separators=(",", ":"))
    return Response(text, media_type="application/json", headers={"cache-control": "no-store"})
