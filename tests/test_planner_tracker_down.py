"""The ingress's planner while the tracker is away (its node lost: Ray
keeps calls to it pending until the cluster notices the node is gone, ~20 s
here in tests/test_e2e_multinode.py): one turn waits for the tracker's
timeout, the turns after it plan locally at once, and the planner goes back
to the tracker once it answers again. No Ray: a fake tracker."""

from __future__ import annotations

import asyncio
import time

import pytest

import deployments.planner as planner_module
from deployments.planner import Planner
from router.config import parse_config
from router.routing_state import RoutingState

TIMEOUT_S = 0.3


def config():
    endpoints = [{"name": n, "base_url": "http://sim/v1", "model": "m"} for n in ("a", "b")]
    return parse_config({"model_groups": {"g": {"strategy": "ordered", "endpoints": endpoints}}})


class Tracker:
    """Hangs (as an actor on a lost node does) until ``back`` is set; then
    plans and answers pings."""

    def __init__(self):
        self.back = False
        self.plans = 0
        self.pings = 0
        tracker = self

        class Method:
            def __init__(self, answer):
                self.answer = answer

            def remote(self, *args):
                future = asyncio.get_running_loop().create_future()
                if tracker.back:
                    future.set_result(self.answer(*args))
                return future  # else never resolved: the caller's timeout ends the wait

        state = RoutingState(config())

        def plan(request):
            tracker.plans += 1
            return state.plan(request[0], required_tags=(), has_tools=False, choices=1, stream=True, lease=request[5])

        def ping():
            tracker.pings += 1
            return True

        self.plan, self.ping = Method(plan), Method(ping)


@pytest.fixture
def short_timeout(monkeypatch):
    monkeypatch.setattr(planner_module, "TRACKER_TIMEOUT_S", TIMEOUT_S)
    monkeypatch.setattr(planner_module, "TRACKER_PROBE_INTERVAL_S", 0.05)


async def timed_plan(p: Planner, turn_id: str):
    started = time.monotonic()
    plan, reserved = await p.plan("g", tags=(), has_tools=False, stream=True, turn_id=turn_id)
    return plan, reserved, time.monotonic() - started


def test_turns_after_a_tracker_timeout_plan_locally_at_once(short_timeout):
    async def scenario():
        tracker = Tracker()
        p = Planner(config(), tracker_lookup=lambda: tracker)
        _, reserved, first_s = await timed_plan(p, "t0")
        assert first_s >= TIMEOUT_S * 0.9 and not reserved  # the one turn that finds out
        waits = [(await timed_plan(p, f"t{i}"))[2] for i in range(1, 6)]
        assert max(waits) < TIMEOUT_S / 3, waits  # the rest do not wait on a tracker known to be away
        assert tracker.plans == 0

    asyncio.run(scenario())


def test_the_planner_returns_to_the_tracker_once_it_answers(short_timeout):
    async def scenario():
        tracker = Tracker()
        p = Planner(config(), tracker_lookup=lambda: tracker)
        await timed_plan(p, "t0")
        tracker.back = True
        deadline = time.monotonic() + 5
        while p.tracker_away and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert not p.tracker_away and tracker.pings >= 1
        plan, reserved, _ = await timed_plan(p, "t1")
        assert reserved and tracker.plans == 1  # asked the tracker again, which holds the lease

    asyncio.run(scenario())


def test_a_lookup_failure_counts_as_away(short_timeout):
    """``ray.get_actor`` raises ValueError while the named actor is gone."""
    async def scenario():
        calls = []

        def lookup():
            calls.append(1)
            raise ValueError("Failed to look up actor")

        p = Planner(config(), tracker_lookup=lookup)
        plan, reserved, _ = await timed_plan(p, "t0")
        assert plan.endpoints and not reserved
        _, _, wait = await timed_plan(p, "t1")
        assert wait < TIMEOUT_S / 3 and p.tracker_away

    asyncio.run(scenario())
