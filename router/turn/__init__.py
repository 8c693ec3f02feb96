"""One turn, from plan to record: the turn loop of the pure core.

``TurnRunner`` walks a plan (fallback, hedge, mid-stream continuation,
cancel), forwards what upstreams send, and owns the turn's accounting: its
leases in flight, what the client was handed, its attempts and its record.
It talks to upstreams only through ``UpstreamTransport``; the Ray
deployments are shells that feed it requests and move its bytes.
"""

from router.turn.relay import ContinuationRelay, PassThroughRelay
from router.turn.runner import TurnRunner
from router.turn.state import Resume, TurnFailure, TurnHead, TurnRequest, TurnSettled, TurnState, new_turn_id
from router.turn.transport import UpstreamTransport

__all__ = [
    "ContinuationRelay",
    "PassThroughRelay",
    "Resume",
    "TurnFailure",
    "TurnHead",
    "TurnRequest",
    "TurnRunner",
    "TurnSettled",
    "TurnState",
    "UpstreamTransport",
    "new_turn_id",
]
