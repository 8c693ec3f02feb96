"""A tiny discrete-event simulation of closed-loop turns against a
``RoutingState``, on a manual clock: no sleeps, no network, deterministic.

``concurrency`` clients each plan a turn, send it to the plan's first
endpoint, wait for it to finish, and plan the next. An attempt's time to
first token comes from ``ttft_s(endpoint, turn_index)``; the rest of the
stream takes ``stream_s(endpoint)``. Outcomes are reported in batches every
``report_interval_s``, as the deployments' reporter does. Used by the
strategy tests and reusable by ``benchmarks/routing.py``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

from router.outcome import AttemptOutcome, OutcomeKind
from router.routing_state import RoutingState

__all__ = ["ManualClock", "SimTurn", "run_closed_loop"]


class ManualClock:
    """A clock that moves only when told to. Seconds."""

    def __init__(self, start_s: float = 0.0):
        self.now_s = start_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += max(0.0, seconds)

    def set(self, now_s: float) -> None:
        self.now_s = max(self.now_s, now_s)


@dataclass(frozen=True, slots=True)
class SimTurn:
    """One simulated turn: where it went and when, in clock seconds."""

    index: int
    endpoint: str
    planned_s: float
    ttft_s: float
    done_s: float


def run_closed_loop(
    state: RoutingState,
    clock: ManualClock,
    group: str,
    *,
    turns: int,
    concurrency: int,
    ttft_s: Callable[[str, int], float],
    stream_s: Callable[[str], float] = lambda endpoint: 0.1,
    report_interval_s: float = 0.05,
    stream: bool = True,
) -> list[SimTurn]:
    """Run ``turns`` turns, ``concurrency`` at a time; return them by index."""
    done: list[SimTurn] = []
    events: list[tuple[float, int, str, object]] = []  # (time, seq, kind, payload)
    seq = iter(range(1 << 62))
    batch: list[AttemptOutcome] = []
    next_index = 0

    def start_turn() -> None:
        nonlocal next_index
        index, next_index = next_index, next_index + 1
        endpoint = state.plan(group, stream=stream, lease=f"sim-{index}").endpoints[0]
        first_s = ttft_s(endpoint, index)
        turn = SimTurn(index, endpoint, clock(), first_s, clock() + first_s + stream_s(endpoint))
        heapq.heappush(events, (turn.done_s, next(seq), "done", turn))

    for _ in range(min(concurrency, turns)):
        start_turn()
    heapq.heappush(events, (clock() + report_interval_s, next(seq), "report", None))
    while events:
        at_s, _, kind, payload = heapq.heappop(events)
        clock.set(at_s)
        if kind == "report":
            if batch:
                state.observe(batch)
                batch = []
            if len(done) < turns or batch:
                heapq.heappush(events, (at_s + report_interval_s, next(seq), "report", None))
            continue
        assert isinstance(payload, SimTurn)
        done.append(payload)
        duration_s = payload.done_s - payload.planned_s
        batch.append(AttemptOutcome(payload.endpoint, OutcomeKind.OK, duration_s, ttft_s=payload.ttft_s,
                                    lease=(f"sim-{payload.index}", 0)))
        if next_index < turns:
            start_turn()
    if batch:
        state.observe(batch)
    return sorted(done, key=lambda t: t.index)
