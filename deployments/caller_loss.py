"""What the ingress does when the provider-caller serving a turn is lost
(its process died, or Serve gave up on it): the turn is dispatched again,
carried over from what the client has, or ended cleanly with a record;
never left as a broken body (``deployments.ingress``)."""

from __future__ import annotations

import dataclasses
import time

from ray.exceptions import NodeDiedError, RayActorError, WorkerCrashedError
from ray.serve.exceptions import ReplicaUnavailableError

from router.errors import TurnInterrupted
from router.sse import DONE_EVENT, encode_json
from router.turn import TurnFailure, TurnHead, TurnRequest, TurnState, new_turn_id

from deployments.turn_log import turn_record

__all__ = ["CALLER_LOST", "carried_over", "failure_bytes", "fresh", "interrupted_record"]

CALLER_LOST = (RayActorError, WorkerCrashedError, NodeDiedError, ReplicaUnavailableError)


def carried_over(turn: TurnRequest, resume) -> TurnRequest:
    """The same turn, carried over to another caller from ``resume``, under a
    new turn id whose attempts that caller reports as it starts them."""
    return dataclasses.replace(turn, turn_id=new_turn_id(), reserved=False, resume=resume)


def fresh(turn: TurnRequest) -> TurnRequest:
    """The same turn, dispatched again from the start (nothing was sent)."""
    return dataclasses.replace(turn, turn_id=new_turn_id(), reserved=False)


def failure_bytes(item) -> bytes:
    """A resumed turn's stream may carry a head (skipped) or, if every
    endpoint failed before a word, a ``TurnFailure`` (sent as an error event)."""
    if isinstance(item, TurnFailure):
        return encode_json(item.error) + DONE_EVENT
    return b""


def interrupted_record(turn: TurnRequest, head: TurnHead | None):
    """The turn log's row for a turn whose caller was lost and could not be
    replaced: written by the ingress, since the caller cannot."""
    state = TurnState(turn, 0.0, error_type=TurnInterrupted.__name__, http_status=200 if head else 502)
    if head is not None:
        state.endpoint, state.provider, state.model = head.endpoint, head.provider, head.model
    state.total_s = time.time() - turn.received_at
    return turn_record(state)
