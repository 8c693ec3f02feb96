"""Stopping the turns a process runs (``router.turn.stop``, the runner's
``live`` registry): what a drain relies on when the router stops.

A turn stopped mid-stream ends with the router's ``router_stopping`` SSE
error and ``[DONE]`` after the words the client already has; one stopped
before its first token, or a non-streamed one, gets a 503. Its attempt is
``cancelled`` (no endpoint is blamed), its record says ``RouterStopping``,
its leases are released and the registry empties. Over the in-memory
transport, no Ray; waits are bounded real loop time.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.outcome import AttemptOutcome, OutcomeKind
from router.sse import DONE_DATA, SSEDecoder
from router.turn import TurnFailure, TurnHead
from router.turn.memory_transport import Reply, openai_sse
from router.turn.stop import LiveTurns
from test_turn_loop import WORDS, Turns, group

SLOW_WORDS = [piece for word in openai_sse(WORDS) for piece in (word, 0.05)]


async def _wait_for(predicate, timeout_s: float = 2.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.005)


def _events(items: list) -> list[dict]:
    decoder = SSEDecoder()
    events = [e.data for item in items if isinstance(item, bytes) for e in decoder.feed(item)]
    return [json.loads(e) if e != DONE_DATA else DONE_DATA for e in events]


def _outcomes(turns: Turns) -> list[OutcomeKind]:
    return [e.kind for e in turns.events if isinstance(e, AttemptOutcome)]


async def _stop_after(turns: Turns, consume, predicate) -> list:
    """Run ``consume`` (which collects the turn's items), stop every live
    turn once ``predicate()`` holds, and return what was collected."""
    task = asyncio.ensure_future(consume())
    await _wait_for(predicate)
    assert turns.runner.live.stop_all() == 1
    async with asyncio.timeout(2.0):
        return await task


@pytest.mark.parametrize("reserved", [True, False])
def test_a_turn_stopped_mid_stream_ends_with_the_routers_error_after_what_was_sent(reserved):
    turns = Turns({"g": group("a", "b")}, lambda _: Reply(pieces=SLOW_WORDS))
    request = turns.request("g", reserved=reserved)
    items: list = []

    async def consume():
        async for item in turns.runner.stream(request):
            items.append(item)
        return items

    asyncio.run(_stop_after(turns, consume, lambda: len(items) >= 4))
    assert isinstance(items[0], TurnHead)
    events = _events(items)
    assert events[-1] == DONE_DATA
    assert events[-2]["error"]["code"] == "router_stopping"
    words = [e["choices"][0]["delta"].get("content") for e in events[:-2] if "choices" in e]
    text = "".join(w for w in words if w)
    assert 0 < len(text) < len(" ".join(WORDS))  # cut, after what was sent, and no other endpoint tried
    assert [r.endpoint for r in turns.transport.sent] == ["a"]
    record = turns.record
    assert (record.error_type, record.http_status, record.status) == ("RouterStopping", 200, "error")
    assert _outcomes(turns) == [OutcomeKind.CANCELLED]
    assert turns.state.in_flight() == 0
    assert len(turns.runner.live) == 0


def test_a_turn_stopped_before_its_first_token_gets_a_503():
    turns = Turns({"g": group("a", "b")}, lambda _: Reply(hang=True))
    request = turns.request("g", reserved=True)

    async def consume():
        return [item async for item in turns.runner.stream(request)]

    items = asyncio.run(_stop_after(turns, consume, lambda: len(turns.transport.sent) == 1))
    (failure,) = items
    assert isinstance(failure, TurnFailure)
    assert failure.http_status == 503
    assert failure.error["error"]["code"] == "router_stopping"
    assert [r.endpoint for r in turns.transport.sent] == ["a"]  # no fallback to b
    assert turns.record.error_type == "RouterStopping"
    assert _outcomes(turns) == [OutcomeKind.CANCELLED]
    assert len(turns.runner.live) == 0


def test_a_non_streamed_turn_stopped_gets_a_503():
    turns = Turns({"g": group("a", "b")}, lambda _: Reply(hang=True))
    request = turns.request("g", reserved=True, stream=False)
    items = asyncio.run(_stop_after(turns, lambda: turns.runner.complete(request), lambda: len(turns.transport.sent) == 1))
    assert isinstance(items, TurnFailure) and items.http_status == 503
    assert turns.record.error_type == "RouterStopping"
    assert _outcomes(turns) == [OutcomeKind.CANCELLED]


def test_a_stop_reaches_both_racers_of_a_hedge():
    hedged = group("a", "b", hedge={"delay_s": 0.01, "min_delay_s": 0.01, "max_share": 1.0})
    turns = Turns({"g": hedged}, lambda _: Reply(hang=True))
    request = turns.request("g", reserved=True)

    async def consume():
        return [item async for item in turns.runner.stream(request)]

    items = asyncio.run(_stop_after(turns, consume, lambda: len(turns.transport.sent) == 2))
    assert isinstance(items[0], TurnFailure) and items[0].http_status == 503
    assert sorted(_outcomes(turns)) == [OutcomeKind.CANCELLED, OutcomeKind.CANCELLED]
    assert turns.transport.open_responses == 0


def test_turns_that_finish_in_the_grace_period_are_untouched():
    turns = Turns({"g": group("a")}, lambda _: Reply(pieces=openai_sse(WORDS)))

    async def run():
        done = asyncio.ensure_future(asyncio.gather(*(_collect(turns) for _ in range(3))))
        assert await turns.runner.live.wait_empty(2.0)
        return await done

    results = asyncio.run(run())
    assert all(_events(items)[-1] == DONE_DATA and "error" not in str(_events(items)) for items in results)
    assert [r.status for r in turns.records] == ["ok"] * 3


async def _collect(turns: Turns) -> list:
    return [item async for item in turns.runner.stream(turns.request("g", reserved=True))]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "discard", "stop"]), st.integers(0, 5)), max_size=40))
def test_the_live_registry_empties_and_stops_exactly_the_live_turns(ops):
    """Whatever the order of starts, ends and stops, ``len`` is the number of
    turns started and not ended, a stop flips exactly those, and the
    registry reports empty exactly when none is left."""
    live, model, stops = LiveTurns(), set(), {}
    for op, n in ops:
        turn_id = f"t{n}"
        if op == "add" and turn_id not in model:
            stops[turn_id] = live.add(turn_id)
            model.add(turn_id)
        elif op == "discard":
            live.discard(turn_id)
            model.discard(turn_id)
        elif op == "stop":
            assert live.stop_all() == len(model)
            assert all(stops[t].requested for t in model)
        assert len(live) == len(model)
    for turn_id in list(model):
        live.discard(turn_id)
    assert asyncio.run(live.wait_empty(0.0))
