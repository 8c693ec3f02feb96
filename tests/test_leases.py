"""Leases in flight (``RoutingState``), property-tested over random turns:
whatever order the caller's channel and the ingress's channel arrive in,
and however they are batched, a lease is held from its attempt's start until
the first of its outcome or the turn's close, never counted below zero or
above the attempts running, and every count is back to zero once every turn
has ended and been reported. Fake clock: nothing expires here.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from router.config import parse_config
from router.outcome import AttemptOutcome, AttemptStarted, OutcomeKind, TurnClosed
from router.routing_state import RoutingState
from router.simulation import ManualClock

NAMES = ("a", "b", "c")
CONFIG = parse_config({"model_groups": {"g": {
    "strategy": "latency-based",
    "endpoints": [{"name": n, "base_url": "http://x/v1", "model": "m"} for n in NAMES],
}}})
KINDS = [k for k in OutcomeKind]


@dataclass
class Turn:
    turn_id: str
    reserved: bool
    endpoints: list[str]  # per attempt; attempt 0 goes where the plan says
    kinds: list[OutcomeKind]
    caller_dies_at: int | None  # the attempt whose outcome is never sent
    closes: bool  # the ingress sends TurnClosed
    duplicate_outcome: int | None
    duplicate_close: bool
    first: str | None = None  # set when the plan runs


@dataclass(frozen=True)
class Plan:
    turn: Turn


@dataclass(frozen=True)
class Close:
    turn: Turn
    duplicate: bool = False


@dataclass(frozen=True)
class Start:
    turn: Turn
    index: int
    duplicate: bool = False  # never: a start is sent once


@dataclass(frozen=True)
class Finish:
    turn: Turn
    index: int
    duplicate: bool = False


@st.composite
def turns(draw) -> list[Turn]:
    result = []
    for t in range(draw(st.integers(1, 20))):
        attempts = draw(st.integers(1, 3))
        dies_at = draw(st.none() | st.integers(0, attempts - 1))
        client_left = draw(st.booleans())
        last_outcome = attempts - 1 if dies_at is None else dies_at - 1
        result.append(Turn(
            turn_id=f"t{t}",
            reserved=draw(st.booleans()),
            endpoints=[draw(st.sampled_from(NAMES)) for _ in range(attempts)],
            kinds=[draw(st.sampled_from(KINDS)) for _ in range(attempts)],
            caller_dies_at=dies_at,
            closes=dies_at is not None or client_left or draw(st.booleans()),
            duplicate_outcome=draw(st.none() | st.integers(0, last_outcome)) if last_outcome >= 0 else None,
            duplicate_close=draw(st.booleans()),
        ))
    return result


def caller_events(turn: Turn) -> list:
    """What the caller sends for one turn, in order, until it ends or dies."""
    events = []
    for index in range(len(turn.endpoints)):
        if index or not turn.reserved:
            events.append(Start(turn, index))
        if turn.caller_dies_at == index:
            return events
        events.append(Finish(turn, index))
        if turn.duplicate_outcome == index:
            events.append(Finish(turn, index, duplicate=True))
    return events


def ingress_events(turn: Turn) -> list:
    events = [Plan(turn)]
    if turn.closes:
        events.append(Close(turn))
        if turn.duplicate_close:
            events.append(Close(turn, duplicate=True))
    return events


def schedule(all_turns: list[Turn], data) -> list:
    """One delivery order: each turn's caller events and ingress events keep
    their own order; a turn's caller events come after its plan."""
    callers = {t.turn_id: caller_events(t) for t in all_turns}
    ingress = {t.turn_id: ingress_events(t) for t in all_turns}
    planned: set[str] = set()
    order = []
    while True:
        ready = [("ingress", tid) for tid, q in ingress.items() if q]
        ready += [("caller", tid) for tid, q in callers.items() if q and tid in planned]
        if not ready:
            return order
        channel, tid = ready[data.draw(st.integers(0, len(ready) - 1))]
        item = (ingress if channel == "ingress" else callers)[tid].pop(0)
        if isinstance(item, Plan):
            planned.add(tid)
        order.append((channel, item))


def batches(order: list, data) -> list:
    """Runs of one channel's events, cut into batches of random sizes; a
    plan is a call of its own."""
    out, current, channel_of_current = [], [], None
    size = 0
    for channel, item in order:
        if isinstance(item, Plan) or channel != channel_of_current or len(current) >= size:
            if current:
                out.append(current)
            current, channel_of_current = [], channel
            size = data.draw(st.integers(1, 4))
        if isinstance(item, Plan):
            out.append([item])
            channel_of_current = None
            continue
        current.append(item)
    if current:
        out.append(current)
    return out


def lease_event(item):
    turn = item.turn
    if isinstance(item, Close):
        return TurnClosed(turn.turn_id)
    endpoint = turn.first if item.index == 0 else turn.endpoints[item.index]
    if isinstance(item, Start):
        return AttemptStarted(endpoint, (turn.turn_id, item.index))
    return AttemptOutcome(endpoint, turn.kinds[item.index], 0.1, lease=(turn.turn_id, item.index))


@dataclass
class Model:
    """What should be held: the documented rule, kept by hand."""

    held: dict[tuple[str, int], str] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)
    running: Counter = field(default_factory=Counter)  # endpoint -> attempts started and not finished

    def plan(self, turn: Turn) -> None:
        if turn.reserved:
            self.held[(turn.turn_id, 0)] = turn.first
            self.running[turn.first] += 1

    def take(self, item) -> None:
        turn = item.turn
        if isinstance(item, Close):
            self.closed.add(turn.turn_id)
            for key in [k for k in self.held if k[0] == turn.turn_id]:
                del self.held[key]
            return
        endpoint = turn.first if item.index == 0 else turn.endpoints[item.index]
        key = (turn.turn_id, item.index)
        if isinstance(item, Start):
            self.running[endpoint] += 1
            if turn.turn_id not in self.closed:
                self.held[key] = endpoint
        elif not item.duplicate:
            self.running[endpoint] -= 1
            self.held.pop(key, None)

    def counts(self) -> dict[str, int]:
        counts = Counter(self.held.values())
        return {name: counts[name] for name in NAMES}


def in_flight(state: RoutingState) -> dict[str, int]:
    return {name: s["in_flight"] for name, s in state.snapshot().items()}


@settings(max_examples=150, deadline=None)
@given(turns(), st.data())
def test_leases_balance_whatever_the_order_and_batching(all_turns, data):
    state = RoutingState(CONFIG, clock=ManualClock(100.0), rng=random.Random(data.draw(st.integers(0, 2**16))))
    model = Model()
    for batch in batches(schedule(all_turns, data), data):
        if isinstance(batch[0], Plan):
            turn = batch[0].turn
            plan = state.plan("g", lease=turn.turn_id if turn.reserved else None)
            turn.first = plan.endpoints[0]
            model.plan(turn)
        else:
            before = in_flight(state)
            state.report([lease_event(item) for item in batch])
            for item in batch:
                model.take(item)
            if all(item.duplicate for item in batch):
                # A batch of repeats only (a second outcome, a second close) changes nothing.
                assert in_flight(state) == before
        counts = in_flight(state)
        assert counts == model.counts()
        for name in NAMES:
            assert 0 <= counts[name] <= model.running[name]
        assert state.in_flight() == sum(counts.values())
    assert state.in_flight() == 0
    assert in_flight(state) == dict.fromkeys(NAMES, 0)


@settings(max_examples=100, deadline=None)
@given(turns(), st.data())
def test_repeating_any_outcome_or_close_afterwards_changes_nothing(all_turns, data):
    state = RoutingState(CONFIG, clock=ManualClock(100.0), rng=random.Random(0))
    delivered = []
    for batch in batches(schedule(all_turns, data), data):
        if isinstance(batch[0], Plan):
            turn = batch[0].turn
            turn.first = state.plan("g", lease=turn.turn_id if turn.reserved else None).endpoints[0]
            continue
        events = [lease_event(item) for item in batch]
        state.report(events)
        delivered += [e for e in events if not isinstance(e, AttemptStarted)]
    repeats = data.draw(st.lists(st.sampled_from(delivered), max_size=10)) if delivered else []
    state.report(repeats)
    assert state.in_flight() == 0
    assert in_flight(state) == dict.fromkeys(NAMES, 0)
