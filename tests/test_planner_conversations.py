"""The ingress's planner and conversations, without Ray: a turn that names a
conversation always asks the tracker (its count and pins live there), also
under ``planning: snapshot``; without the tracker its index is the client's."""

from __future__ import annotations

import asyncio
import random

from ray.exceptions import RayError

from deployments.planner import Planner
from router.config import parse_config
from router.routing_state import RoutingState
from router.simulation import ManualClock


def config(planning: str):
    endpoints = [{"name": n, "base_url": "http://sim/v1", "model": "m"} for n in ("a", "b")]
    return parse_config({"model_groups": {"g": {"endpoints": endpoints}}, "deployments": {"planning": planning}})


class FakeTracker:
    """The tracker actor's ``plan`` over a real ``RoutingState``; records requests."""

    def __init__(self, cfg, *, down: bool = False):
        self.state = RoutingState(cfg, clock=ManualClock(0.0), rng=random.Random(0))
        self.requests: list[tuple] = []
        self.down = down
        self.plan = self

    def remote(self, request):
        self.requests.append(request)
        future = asyncio.get_running_loop().create_future()
        if self.down:
            future.set_exception(RayError("tracker gone"))
        else:
            group, tags, has_tools, choices, stream, lease, conversation = request
            future.set_result(self.state.plan(group, required_tags=tags, has_tools=has_tools, choices=choices, stream=stream,
                                              lease=lease, conversation=conversation))
        return future


def planner(planning: str, **tracker):
    cfg = config(planning)
    fake = FakeTracker(cfg, **tracker)
    p = Planner(cfg, clock=ManualClock(0.0), tracker_lookup=lambda: fake)
    p.fake_tracker = fake
    return p


def plan(p: Planner, turn_id: str, conversation=None):
    return asyncio.run(p.plan("g", tags=(), has_tools=False, stream=True, turn_id=turn_id, conversation=conversation))


def test_every_conversation_turn_asks_the_tracker_even_with_snapshots():
    p = planner("snapshot")
    plan(p, "t0")  # fetches the snapshot for this kind of turn
    plan(p, "t1")  # served from it
    assert len(p.fake_tracker.requests) == 1
    turns = [plan(p, f"c{i}", ("key", "call", None)) for i in range(3)]
    assert len(p.fake_tracker.requests) == 4
    assert [t.conversation_turn for t, _ in turns] == [1, 2, 3] and all(reserved for _, reserved in turns)
    assert p.fake_tracker.requests[-1][6] == ("key", "call", None)


def test_per_turn_planning_sends_the_conversation_along():
    p = planner("per-turn")
    planned, reserved = plan(p, "t1", ("key", "call", 4))
    assert planned.conversation_turn == 4 and reserved
    assert plan(p, "t2", ("key", "call", None))[0].conversation_turn == 5


def test_without_the_tracker_the_index_is_the_client_s_or_none():
    p = planner("per-turn", down=True)
    down = p.fake_tracker

    async def two_turns():  # in one event loop, as in a replica
        first = await p.plan("g", tags=(), has_tools=False, stream=True, turn_id="t1", conversation=("key", "call", 7))
        second = await p.plan("g", tags=(), has_tools=False, stream=True, turn_id="t2", conversation=("key", "call", None))
        return first, second

    (planned, reserved), (second, _) = asyncio.run(two_turns())
    assert planned.conversation_turn == 7 and not reserved
    assert second.conversation_turn is None
    # The second turn planned at once, without asking a tracker known to be
    # away (tests/test_planner_tracker_down.py).
    assert len(down.requests) == 1
