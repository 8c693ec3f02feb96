"""Strategies, alone and driven through RoutingState by the simulation:
pure, fake clock, seeded rng, no sleeps."""

import random
from collections import Counter

import pytest

from router.config import LatencyConfig, parse_config
from router.routing_state import RoutingState
from router.simulation import ManualClock, run_closed_loop
from router.strategies import (
    UNKNOWN_BUSY_S,
    EndpointLoad,
    LatencyBased,
    LeastBusy,
    Ordered,
    WeightedShuffle,
    make_strategy,
)

TTFT_S = {"A": 0.040, "B": 0.120, "C": 0.250}
STREAM_S = {"A": 0.100, "B": 0.160, "C": 0.240}  # 20 tokens at 5/8/12 ms


def group_config(strategy: str, weights=(1, 1, 1), **latency):
    group = {
        "strategy": strategy,
        "endpoints": [
            {"name": name, "base_url": "http://sim/v1", "model": "m", "weight": weight}
            for name, weight in zip("ABC", weights)
        ],
    }
    if latency:
        group["latency"] = latency
    return parse_config({"model_groups": {"g": group}})


def simulate(strategy="latency-based", *, turns=300, ttft=None, seed=0, concurrency=4, **latency):
    clock = ManualClock(1000.0)
    state = RoutingState(group_config(strategy, **latency), clock=clock, rng=random.Random(seed))
    ttft = ttft or (lambda endpoint, index: TTFT_S[endpoint])
    done = run_closed_loop(
        state, clock, "g", turns=turns, concurrency=concurrency, ttft_s=ttft, stream_s=lambda e: STREAM_S[e]
    )
    return done, state


def load(name, position=0, **kwargs):
    return EndpointLoad(name=name, position=position, **kwargs)


# -- latency-based, through the simulation ----------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_latency_based_converges_to_the_fastest_endpoint(seed):
    done, _ = simulate(seed=seed)
    settled = Counter(t.endpoint for t in done[50:])
    assert settled["A"] >= 0.9 * len(done[50:])
    assert sorted(t.ttft_s for t in done[50:])[int(0.9 * len(done[50:]))] == TTFT_S["A"]  # p90 is A's


def a_slows_after(turn, until=None, slow_s=0.4):
    def ttft(endpoint, index):
        if endpoint == "A" and index >= turn and (until is None or index < until):
            return slow_s
        return TTFT_S[endpoint]

    return ttft


@pytest.mark.parametrize("seed", range(5))
def test_latency_based_leaves_a_slowed_endpoint_within_a_few_turns(seed):
    done, _ = simulate(ttft=a_slows_after(150), seed=seed)
    after = done[150:]
    assert sum(t.endpoint == "A" for t in after) <= 8  # the benchmark's target
    assert Counter(t.endpoint for t in after[20:]).most_common(1)[0][0] == "B"


def test_a_turn_still_waiting_is_seen_as_slow_before_it_completes():
    clock = ManualClock(1000.0)
    state = RoutingState(group_config("latency-based", explore_share=0.0), clock=clock, rng=random.Random(1))
    run_closed_loop(state, clock, "g", turns=60, concurrency=1, ttft_s=lambda e, i: TTFT_S[e], stream_s=lambda e: STREAM_S[e])
    assert state.plan("g", lease="hang").endpoints[0] == "A"  # this turn will hang: no outcome arrives
    clock.advance(0.25)
    assert state.plan("g").endpoints[0] == "A"  # 250 ms: still within A's usual time in flight
    clock.advance(0.30)
    snapshot = state.snapshot()["A"]
    assert snapshot["ttft_s"] == pytest.approx(TTFT_S["A"])  # no slow sample has arrived...
    assert state.plan("g").endpoints[0] == "B"  # ...yet the pending turn's age moved traffic


@pytest.mark.parametrize("seed", range(3))
def test_latency_based_recovers_when_the_endpoint_is_fast_again(seed):
    done, _ = simulate(ttft=a_slows_after(150, until=300), turns=800, seed=seed)
    assert Counter(t.endpoint for t in done[-100:])["A"] >= 90


def test_exploration_never_starves_an_endpoint():
    done, _ = simulate(turns=3000, seed=7)
    assert done[-1].planned_s - done[0].planned_s > 100  # a long run, in seconds
    start_s = done[0].planned_s
    for window in range(int((done[-1].planned_s - start_s) // 20)):
        lo, hi = start_s + 20 * window, start_s + 20 * (window + 1)
        seen = {t.endpoint for t in done if lo <= t.planned_s < hi}
        assert seen == {"A", "B", "C"}, f"window {window}"
    share = Counter(t.endpoint for t in done)
    assert share["A"] >= 0.95 * len(done)  # yet exploring costs little


# -- latency-based, unit ----------------------------------------------------


def test_latency_score_is_latency_plus_lateness_times_load_penalty():
    strategy = LatencyBased(random.Random(0), LatencyConfig(in_flight_penalty=0.5))
    assert strategy.score(load("a", latency_s=0.1)) == pytest.approx(0.1)
    assert strategy.score(load("a", latency_s=0.1, in_flight=2)) == pytest.approx(0.2)
    late = load("a", latency_s=0.1, oldest_pending_s=0.5, usual_pending_s=0.2)
    assert late.lateness_s == pytest.approx(0.3) and strategy.score(late) == pytest.approx(0.4)
    assert load("a", oldest_pending_s=0.1, usual_pending_s=0.2).lateness_s == 0.0


def test_no_data_is_an_optimistic_prior_but_only_one_turn_at_a_time():
    strategy = LatencyBased(random.Random(0), LatencyConfig(explore_share=0))
    known = load("known", latency_s=0.05)
    assert strategy.rank([known, load("new")])[0].name == "new"
    busy_new = load("new", in_flight=1)
    assert strategy.score(busy_new) == UNKNOWN_BUSY_S + 1
    assert strategy.rank([known, busy_new])[0].name == "known"


def test_exploration_picks_only_endpoints_without_recent_data():
    strategy = LatencyBased(random.Random(3), LatencyConfig(explore_share=0.5, decay_s=5))
    fresh = [load("a", latency_s=0.04, sample_age_s=0.1), load("b", latency_s=0.4, sample_age_s=1.0)]
    assert all(strategy.rank(fresh)[0].name == "a" for _ in range(200))
    stale = [fresh[0], load("b", latency_s=0.4, sample_age_s=6.0), load("c", latency_s=0.25, sample_age_s=60.0)]
    firsts = Counter(strategy.rank(stale)[0].name for _ in range(2000))
    assert 0.4 < firsts["a"] / 2000 < 0.6
    assert firsts["b"] > 300 and firsts["c"] > 300


def test_latency_ties_are_broken_at_random():
    strategy = LatencyBased(random.Random(5), LatencyConfig(explore_share=0))
    loads = [load(n, latency_s=0.1, sample_age_s=0) for n in "abc"]
    firsts = Counter(strategy.rank(loads)[0].name for _ in range(3000))
    assert all(800 < firsts[n] < 1200 for n in "abc")


# -- least-busy, weighted shuffle, ordered ------------------------------------


def test_least_busy_picks_fewest_in_flight_and_breaks_ties_at_random():
    strategy = LeastBusy(random.Random(0))
    loads = [load("a", in_flight=2), load("b", in_flight=1), load("c", in_flight=1)]
    firsts = Counter(strategy.rank(loads)[0].name for _ in range(2000))
    assert set(firsts) == {"b", "c"} and 850 < firsts["b"] < 1150
    assert strategy.rank(loads)[-1].name == "a"


def test_least_busy_spreads_concurrent_turns_evenly():
    state = RoutingState(group_config("least-busy"), clock=ManualClock(), rng=random.Random(0))
    for i in range(30):
        state.plan("g", lease=f"t{i}")  # nothing finishes: every turn stays in flight
    assert {name: s["in_flight"] for name, s in state.snapshot().items()} == {"A": 10, "B": 10, "C": 10}
    done, _ = simulate("least-busy", turns=300, ttft=lambda e, i: 0.1, seed=2)
    share = Counter(t.endpoint for t in done)
    assert all(80 <= share[n] <= 120 for n in "ABC")


def test_weighted_shuffle_follows_configured_weights():
    strategy = WeightedShuffle(random.Random(0))
    loads = [load("a", weight=1.0), load("b", weight=3.0)]
    firsts = Counter(strategy.rank(loads)[0].name for _ in range(4000))
    assert 0.7 < firsts["b"] / 4000 < 0.8
    assert strategy.score(loads[0]) is None


def test_ordered_is_the_configured_order():
    loads = [load("c", position=2), load("a", position=0), load("b", position=1)]
    assert [c.name for c in Ordered().rank(loads)] == ["a", "b", "c"]


def test_make_strategy_builds_each_configured_name():
    rng = random.Random(0)
    for name, cls in [("latency-based", LatencyBased), ("least-busy", LeastBusy), ("weighted-shuffle", WeightedShuffle), ("ordered", Ordered)]:
        strategy = make_strategy(name, rng)
        assert isinstance(strategy, cls) and strategy.name == name
    with pytest.raises(ValueError):
        make_strategy("fastest", rng)
