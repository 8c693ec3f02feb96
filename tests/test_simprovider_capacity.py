"""The simulator's finite capacity (`ttft_per_in_flight`): a request's time
to first token stretches with the requests already in flight at its profile,
as a served model's does under concurrent load."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simprovider import Behavior, start_simulator
from simprovider.playback import Plan
from simprovider.server import BEHAVIOR_HEADER
from simprovider.wire import parse_completion_request

REQUEST = parse_completion_request(b'{"messages": [{"role": "user", "content": "hi"}], "stream": true}')


@given(st.floats(0, 500), st.floats(0, 2), st.integers(0, 50))
def test_each_request_in_flight_stretches_the_ttft_by_the_fraction(ttft_ms, fraction, others):
    behavior = Behavior(ttft_ms=ttft_ms, ttft_per_in_flight=fraction)
    plan = Plan(REQUEST, behavior, [], arrived_s=0.0, others_in_flight=others)
    assert plan.ttft_ms == pytest.approx(ttft_ms * (1 + fraction * others))


def test_unlimited_capacity_is_the_default():
    assert Plan(REQUEST, Behavior(ttft_ms=70), [], arrived_s=0.0, others_in_flight=9).ttft_ms == 70


def test_a_request_behind_another_in_flight_starts_later_over_http():
    profile = f"p{uuid.uuid4().hex[:6]}"
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}

    async def first_token_s(client: httpx.AsyncClient, url: str, headers: dict) -> float:
        started = time.monotonic()
        async with client.stream("POST", url, json=body, headers=headers) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    return time.monotonic() - started
        raise AssertionError("no content")

    async def in_flight_becomes(sim, count: int) -> None:
        deadline = time.monotonic() + 5
        while sim.stats()[profile]["in_flight"] != count:
            assert time.monotonic() < deadline, f"in flight never became {count}"
            await asyncio.sleep(0.01)

    async def scenario(sim) -> tuple[float, float]:
        url = sim.base_url(profile) + "/chat/completions"
        async with httpx.AsyncClient(timeout=10) as client:
            alone_s = await first_token_s(client, url, {})
            await in_flight_becomes(sim, 0)  # the first request is over, not merely past its first token
            # A request that stays in flight for ~3 s: the next one shares the profile.
            holder = asyncio.create_task(first_token_s(
                client, url, {BEHAVIOR_HEADER: json.dumps({"ttft_ms": 0, "token_interval_ms": 1500, "tokens": 3})}))
            await in_flight_becomes(sim, 1)
            behind_s = await first_token_s(client, url, {})
            await holder
            return alone_s, behind_s

    with start_simulator({}) as sim:
        sim.set_behavior(profile, ttft_ms=400, token_interval_ms=1, tokens=2, ttft_per_in_flight=1.0)
        alone_s, behind_s = asyncio.run(scenario(sim))
        assert alone_s >= 0.39
        assert behind_s >= 0.79  # 400 ms x (1 + 1.0 x one other in flight)
