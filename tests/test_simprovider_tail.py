"""The simulated provider's heavy TTFT tail (`ttft_tail_ms`, `ttft_tail_share`).

Pure tests draw from a seeded `random.Random`, so every count is exact for
a given seed; one end-to-end test checks the tail reaches the wire.
"""

from __future__ import annotations

import json
import random
import time

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from simprovider import Behavior, start_simulator
from simprovider.behavior import merge_behavior
from simprovider.playback import Plan
from simprovider.profiles import ProfileRegistry
from simprovider.wire import parse_completion_request

TAILED = {"ttft_ms": 50, "ttft_tail_ms": 1500, "ttft_tail_share": 0.1}
DRAWS = 20_000


def draws(behavior: Behavior, n: int, rng: random.Random | None = None) -> list[float]:
    return [behavior.first_token_ms(rng) for _ in range(n)]


def plan_for(behavior: Behavior) -> Plan:
    request = parse_completion_request(b'{"messages": [{"role": "user", "content": "hi"}], "stream": true}')
    return Plan(request, behavior, [], arrived_s=100.0)


# --- the distribution -----------------------------------------------------


@pytest.mark.parametrize("share", [0.02, 0.1, 0.5])
def test_tail_share_of_seeded_draws_matches_the_share(share):
    behavior = Behavior(**{**TAILED, "ttft_tail_share": share})

    values = draws(behavior, DRAWS, random.Random(1234))

    assert set(values) == {50.0, 1500.0}
    observed = values.count(1500.0) / DRAWS
    # Binomial standard deviation at n=20000 is at most 0.0036; 5 sigma.
    assert observed == pytest.approx(share, abs=0.018)


def test_share_zero_never_gives_the_tail_and_draws_nothing():
    behavior = Behavior(ttft_ms=50, ttft_tail_ms=1500, ttft_tail_share=0.0)
    rng = random.Random(7)
    state = rng.getstate()

    assert set(draws(behavior, 1000, rng)) == {50.0}
    assert rng.getstate() == state


def test_share_one_always_gives_the_tail():
    behavior = Behavior(**{**TAILED, "ttft_tail_share": 1.0})

    assert set(draws(behavior, 1000, random.Random(7))) == {1500.0}


def test_no_tail_by_default():
    assert set(draws(Behavior(ttft_ms=30), 100)) == {30.0}


@given(
    share=st.floats(min_value=0, max_value=1),
    seed=st.integers(min_value=0, max_value=2**32),
    ttft_ms=st.floats(min_value=0, max_value=10_000),
    tail_ms=st.floats(min_value=0, max_value=10_000),
)
def test_every_draw_is_either_the_ttft_or_the_tail(share, seed, ttft_ms, tail_ms):
    behavior = Behavior(ttft_ms=ttft_ms, ttft_tail_ms=tail_ms, ttft_tail_share=share)

    assert set(draws(behavior, 20, random.Random(seed))) <= {ttft_ms, tail_ms}


# --- the behaviour's own seeded stream ------------------------------------


def test_same_seed_replays_the_same_sequence():
    first = draws(Behavior(**TAILED, seed=42), 500)
    second = draws(Behavior(**TAILED, seed=42), 500)
    other = draws(Behavior(**TAILED, seed=43), 500)

    assert first == second
    assert first != other
    assert 1500.0 in first


def test_own_stream_continues_across_draws():
    behavior = Behavior(**TAILED, seed=42)
    reference = random.Random(42)

    expected = [1500.0 if reference.random() < 0.1 else 50.0 for _ in range(200)]

    assert draws(behavior, 200) == expected


def test_setting_the_profile_restarts_its_stream():
    registry = ProfileRegistry({"p": Behavior(**TAILED, seed=5)})
    first = [registry.take("p").first_token_ms() for _ in range(300)]

    registry.update("p", {"tokens": 10})
    again = [registry.take("p").first_token_ms() for _ in range(300)]

    assert first == again


def test_counted_failures_keep_drawing_from_one_stream():
    registry = ProfileRegistry({"p": Behavior(**TAILED, seed=5, failure="drop_after", failure_count=150)})

    values = [registry.take("p").first_token_ms() for _ in range(300)]

    assert values == draws(Behavior(**TAILED, seed=5), 300)


def test_draws_are_not_part_of_the_value():
    drawn = Behavior(**TAILED, seed=1)
    draws(drawn, 10)

    assert drawn == Behavior(**TAILED, seed=1)
    assert hash(drawn) == hash(Behavior(**TAILED, seed=1))
    assert "_draws" not in drawn.model_dump()


# --- validation -------------------------------------------------------------


@pytest.mark.parametrize("share", [-0.1, 1.01])
def test_share_outside_zero_to_one_is_refused(share):
    with pytest.raises(ValidationError):
        Behavior(ttft_tail_ms=1500, ttft_tail_share=share)


def test_a_share_needs_a_tail_time():
    with pytest.raises(ValidationError, match="needs ttft_tail_ms"):
        Behavior(ttft_tail_share=0.1)
    with pytest.raises(ValidationError):
        merge_behavior(Behavior(), {"ttft_tail_share": 0.1})


def test_a_tail_time_without_a_share_is_allowed_and_off():
    behavior = merge_behavior(Behavior(**TAILED), {"ttft_tail_share": 0})

    assert set(draws(behavior, 100)) == {50.0}


def test_negative_tail_time_is_refused():
    with pytest.raises(ValidationError):
        Behavior(ttft_tail_ms=-1, ttft_tail_share=0.1)


# --- the plan ---------------------------------------------------------------


def test_plan_draws_its_ttft_once_and_schedules_every_token_from_it():
    plan = plan_for(Behavior(ttft_ms=50, ttft_tail_ms=1500, ttft_tail_share=1.0, token_interval_ms=5))

    assert plan.ttft_ms == 1500.0
    assert plan.token_due_s(0) == pytest.approx(101.5)
    assert plan.token_due_s(1) == pytest.approx(101.5)
    assert plan.token_due_s(3) == pytest.approx(101.51)


def test_plan_without_tail_uses_ttft_ms():
    plan = plan_for(Behavior(ttft_ms=50, token_interval_ms=5))

    assert plan.ttft_ms == 50.0
    assert plan.token_due_s(2) == pytest.approx(100.055)


# --- end to end ---------------------------------------------------------------


def _first_token_s(client: httpx.Client, url: str) -> float:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    started_s = time.monotonic()
    with client.stream("POST", url, json=body) as response:
        for line in response.iter_lines():
            data = line.removeprefix("data: ")
            if line.startswith("data: ") and data != "[DONE]":
                if json.loads(data)["choices"][0]["delta"].get("content"):
                    return time.monotonic() - started_s
    raise AssertionError("no content token")


def test_tail_reaches_the_wire_and_can_be_turned_off_at_run_time():
    profile = {"ttft_ms": 5, "ttft_tail_ms": 400, "ttft_tail_share": 1.0, "token_interval_ms": 1, "tokens": 3}
    with start_simulator({"tailed": profile}) as sim, httpx.Client(timeout=5.0) as client:
        url = sim.base_url("tailed") + "/chat/completions"

        assert _first_token_s(client, url) >= 0.4 - 0.02  # lower bound only: slow machines

        sim.set_behavior("tailed", ttft_tail_share=0)
        assert _first_token_s(client, url) < 0.3
