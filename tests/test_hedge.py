"""Hedged first token, the pure parts: the delay the tracker puts in a plan,
and the budget a caller replica spends. No Ray."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.config import HedgeConfig, parse_config
from router.errors import ConfigError
from router.hedge import HEDGE_WINDOW_TURNS, HedgeBudget, hedge_delay_s
from router.outcome import AttemptOutcome, OutcomeKind
from router.routing_state import RoutingState
from router.simulation import ManualClock


def test_a_fixed_delay_is_used_as_is_but_never_below_the_floor():
    assert hedge_delay_s(HedgeConfig(delay_s=0.3), [5.0]) == 0.3
    assert hedge_delay_s(HedgeConfig(delay_s=0.01, min_delay_s=0.05), []) == 0.05


def test_without_a_fixed_delay_it_is_the_recent_p95_ttft():
    ttfts = [0.05] * 95 + [2.0] * 5  # p95 is the 95th of 100: still 0.05
    assert hedge_delay_s(HedgeConfig(), ttfts) == pytest.approx(0.05)
    ttfts = [0.05] * 90 + [2.0] * 10
    assert hedge_delay_s(HedgeConfig(), ttfts) == 2.0
    assert hedge_delay_s(HedgeConfig(min_delay_s=0.2), [0.01] * 10) == 0.2


def test_without_samples_an_adaptive_delay_does_not_hedge():
    assert hedge_delay_s(HedgeConfig(), []) is None


def test_the_budget_allows_its_share_of_a_window():
    budget = HedgeBudget(0.1)
    granted = 0
    for _ in range(HEDGE_WINDOW_TURNS):
        budget.turn()
        granted += budget.try_hedge()
    assert granted == 10


def test_turns_side_by_side_may_each_hedge_whichever_started_last():
    # Four turns in flight; two slow ones hedge after all four started.
    budget = HedgeBudget(0.1)
    for _ in range(4):
        budget.turn()
    assert budget.try_hedge() and budget.try_hedge()
    assert budget.hedges_in_window == 2


def test_hedges_leave_the_window_with_their_turns():
    budget = HedgeBudget(0.1, window_turns=20)  # 2 hedges per 20 turns
    budget.turn()
    assert budget.try_hedge()
    budget.turn()
    assert budget.try_hedge()
    budget.turn()
    assert not budget.try_hedge()  # two in the window already
    for _ in range(17):
        budget.turn()
    assert budget.hedges_in_window == 2
    budget.turn()  # the first hedged turn leaves the window
    assert budget.hedges_in_window == 1
    assert budget.try_hedge()


def test_no_hedge_before_any_turn():
    assert not HedgeBudget(1.0).can_hedge()
    assert not HedgeBudget(1.0).try_hedge()


def test_asking_spends_nothing():
    budget = HedgeBudget(0.01)  # one hedge per window
    budget.turn()
    assert budget.can_hedge() and budget.can_hedge()
    assert budget.hedges_in_window == 0
    assert budget.try_hedge()
    assert not budget.can_hedge()


@given(st.floats(0.01, 1.0), st.lists(st.booleans(), min_size=1, max_size=400))
def test_no_window_of_turns_ever_holds_more_hedges_than_the_share(share, wants):
    window = 50
    budget = HedgeBudget(share, window_turns=window)
    hedged = []
    for want in wants:
        budget.turn()
        hedged.append(want and budget.try_hedge())
    allowed = max(1, int(share * window))
    for start in range(len(hedged)):
        assert sum(hedged[start : start + window]) <= allowed


def _state(hedge: dict | None, n_endpoints: int = 2):
    group = {
        "strategy": "ordered",
        "endpoints": [{"name": f"e{i}", "base_url": "http://sim/v1", "model": "m"} for i in range(n_endpoints)],
    }
    if hedge is not None:
        group["hedge"] = hedge
    config = parse_config({"model_groups": {"g": group}})
    return RoutingState(config, clock=ManualClock(100.0), rng=random.Random(0))


def test_the_plan_carries_the_hedge_delay_for_streaming_turns_only():
    state = _state({"delay_s": 0.2})
    assert state.plan("g").hedge_after_s == 0.2
    assert state.plan("g", stream=False).hedge_after_s is None
    assert _state(None).plan("g").hedge_after_s is None
    assert _state({"delay_s": 0.2}, n_endpoints=1).plan("g").hedge_after_s is None  # nothing to hedge on


def test_an_adaptive_delay_follows_the_first_endpoints_ttfts():
    state = _state({})
    assert state.plan("g").hedge_after_s is None  # no samples yet
    state.observe([AttemptOutcome("e0", OutcomeKind.OK, 0.5, ttft_s=t) for t in [0.1] * 18 + [0.9] * 2])
    assert state.plan("g").hedge_after_s == pytest.approx(0.9)


def test_hedge_config_is_validated():
    with pytest.raises(ConfigError) as info:
        parse_config({"model_groups": {"g": {"hedge": {"max_share": 2}, "endpoints": [{"name": "e", "base_url": "http://x/v1", "model": "m"}]}}})
    assert "hedge.max_share" in str(info.value)
