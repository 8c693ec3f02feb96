"""The turn runner's hedge race, without Ray: a real ``TurnRunner`` with its
pooled upstream client (the default, aiohttp) against the simulated provider on loopback. Covers what
the end-to-end test cannot arrange cheaply: a primary that fails while the
hedge is out, both racers failing, a client leaving mid-race, the budget."""

from __future__ import annotations

import asyncio
import time

import pytest

from deployments.turn_log import turn_record
from router.outcome import AttemptOutcome, AttemptStarted
from router.turn import TurnFailure, TurnHead, TurnRequest, TurnRunner
from deployments.upstream import upstream_pool
from router.config import parse_config
from simprovider import start_simulator

PROFILES = {
    "slow": {"ttft_ms": 3000, "token_interval_ms": 2, "tokens": 4},
    "fast": {"ttft_ms": 20, "token_interval_ms": 2, "tokens": 4},
    "slow-then-503": {"ttft_ms": 0, "failure": "http_503"},
    "hang": {"failure": "hang"},
}


@pytest.fixture(scope="module")
def sim():
    with start_simulator(PROFILES) as simulator:
        yield simulator


def runner_for(sim, names, max_share=1.0, delay_s=0.1):
    endpoints = [{"name": f"{n}-{i}", "base_url": sim.base_url(n), "model": "m"} for i, n in enumerate(names)]
    config = parse_config({
        "model_groups": {"g": {
            "strategy": "ordered",
            "timeouts": {"first_token_s": 2.0, "total_s": 8},
            "hedge": {"delay_s": delay_s, "max_share": max_share},
            "endpoints": endpoints,
        }},
        "turn_log": {"sink": "none"},
    })
    records, outcomes = [], []
    runner = TurnRunner(config, upstream_pool(config.deployments.upstream_client, {}), outcomes.extend,
                        lambda turn: records.append(turn_record(turn)))
    plan = tuple(e["name"] for e in endpoints)
    request = TurnRequest("r1", "g", plan, len(plan), {"model": "g", "messages": [{"role": "user", "content": "hi"}]},
                          stream=True, include_usage=False, hedge_after_s=delay_s)
    return runner, request, records, outcomes


async def collect(runner, request):
    items, started = [], time.monotonic()
    first_s = None
    async for item in runner.stream(request):
        if first_s is None and not isinstance(item, (TurnHead, TurnFailure)):
            first_s = time.monotonic() - started
        items.append(item)
    return items, first_s


def test_the_hedge_wins_over_a_slow_first_token(sim):
    runner, request, records, outcomes = runner_for(sim, ["slow", "fast"])
    items, first_s = asyncio.run(collect(runner, request))
    assert isinstance(items[0], TurnHead) and items[0].endpoint == "fast-1"
    assert first_s < 1.0
    (record,) = records
    assert record.hedged and record.status == "ok"
    assert {(a.endpoint, a.outcome) for a in record.attempts} == {("slow-0", "cancelled"), ("fast-1", "ok")}
    loser = next(o for o in outcomes if isinstance(o, AttemptOutcome) and o.endpoint == "slow-0")
    assert loser.ttft_s is not None and loser.ttft_s >= 0.1  # its wait, a lower bound of its TTFT
    # The hedge is counted in flight from the moment it starts, and released by its outcome.
    started = [e for e in outcomes if isinstance(e, AttemptStarted)]
    assert [(e.endpoint, e.lease[1]) for e in started] == [("fast-1", 1)]
    assert outcomes.index(started[0]) < next(i for i, o in enumerate(outcomes) if isinstance(o, AttemptOutcome) and o.endpoint == "fast-1")


def test_when_both_racers_fail_the_turn_goes_on_down_the_plan(sim):
    runner, request, records, _ = runner_for(sim, ["hang", "slow-then-503", "fast"], delay_s=0.05)
    items, _ = asyncio.run(collect(runner, request))
    assert items[0].endpoint == "fast-2"
    (record,) = records
    assert [a.endpoint for a in record.attempts][-1] == "fast-2"
    assert {(a.endpoint, a.outcome) for a in record.attempts} >= {("slow-then-503-1", "upstream_5xx")}


def test_a_client_leaving_mid_race_closes_both_racers(sim):
    runner, request, records, _ = runner_for(sim, ["hang", "slow"], delay_s=0.05)

    async def leave_early():
        task = asyncio.ensure_future(collect(runner, request))
        await asyncio.sleep(0.4)  # both racers are out by now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(leave_early())
    (record,) = records
    assert record.status == "cancelled"
    assert sorted(a.outcome for a in record.attempts) == ["cancelled", "cancelled"]
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and (sim.stats()["hang"]["in_flight"] or sim.stats()["slow"]["in_flight"]):
        time.sleep(0.05)
    assert sim.stats()["hang"]["in_flight"] == 0 and sim.stats()["slow"]["in_flight"] == 0


def test_without_budget_the_slow_first_endpoint_is_waited_out(sim):
    runner, request, records, _ = runner_for(sim, ["fast", "fast"], max_share=0.01, delay_s=0.005)

    async def two_turns():
        await collect(runner, request)  # spends the window's one hedge (fast's TTFT is 20 ms > 5 ms)
        await collect(runner, request)

    asyncio.run(two_turns())
    assert [r.hedged for r in records] == [True, False]
