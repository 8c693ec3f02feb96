"""The tracker's plain state object: pure, no Ray, fake clock, seeded rng."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.config import parse_config
from router.defaults import embedded_default
from router.errors import ModelNotFound, NoEligibleEndpoint
from router.outcome import AttemptOutcome, AttemptStarted, OutcomeKind, TurnClosed
from router.routing_state import RoutingState
from router.simulation import ManualClock

NAMES = ("sim-fast", "sim-medium", "sim-slow")


def config(strategy="latency-based", tags=((), (), ()), **group):
    endpoints = [
        {"name": name, "base_url": "http://sim/v1", "model": "m", "tags": list(t)} for name, t in zip(NAMES, tags)
    ]
    return parse_config({"model_groups": {"voice-fast": {"strategy": strategy, "endpoints": endpoints, **group}}})


def make_state(strategy="latency-based", seed=0, **kwargs):
    clock = ManualClock(100.0)
    return RoutingState(config(strategy, **kwargs), clock=clock, rng=random.Random(seed)), clock


@pytest.fixture
def state():
    return RoutingState(embedded_default("http://127.0.0.1:1", {}), clock=ManualClock(100.0), rng=random.Random(0))


def ok(endpoint, ttft_s, duration_s=None, **kwargs):
    return AttemptOutcome(endpoint, OutcomeKind.OK, duration_s or ttft_s + 0.1, ttft_s=ttft_s, **kwargs)


def test_plan_ranks_every_endpoint_and_counts_the_first_in_flight(state):
    assert state.plan("voice-fast").endpoints and state.in_flight() == 0  # no lease: ranking only
    plan = state.plan("voice-fast", lease="t1")
    assert sorted(plan.endpoints) == sorted(NAMES)
    assert plan.max_attempts == 3
    snapshot = state.snapshot()
    assert snapshot[plan.endpoints[0]]["in_flight"] == 1
    assert sum(s["in_flight"] for s in snapshot.values()) == 1


def test_ordered_strategy_is_the_configured_order():
    state, _ = make_state("ordered")
    assert state.plan("voice-fast").endpoints == NAMES


def test_unknown_group_is_model_not_found(state):
    with pytest.raises(ModelNotFound):
        state.plan("nope")


def test_outcomes_release_their_own_leases_and_never_go_negative():
    state, _ = make_state("ordered")
    state.plan("voice-fast", lease="t1")
    state.report([AttemptStarted("sim-medium", ("t1", 1))])
    state.observe(
        [
            AttemptOutcome("sim-fast", OutcomeKind.UPSTREAM_ERROR, 0.1, lease=("t1", 0)),
            AttemptOutcome("sim-medium", OutcomeKind.OK, 0.3, ttft_s=0.12, lease=("t1", 1)),
            AttemptOutcome("sim-slow", OutcomeKind.CANCELLED, 0.1, lease=("t1", 2)),  # never held: must not go below 0
            AttemptOutcome("removed-by-reload", OutcomeKind.OK, 0.1),
        ]
    )
    snap = state.snapshot()
    assert snap["sim-fast"]["in_flight"] == 0 and snap["sim-fast"]["failures"] == 1
    assert snap["sim-medium"]["last_ttft_s"] == 0.12 and snap["sim-medium"]["failures"] == 0
    assert snap["sim-slow"]["in_flight"] == 0
    assert snap["sim-slow"]["failures"] == 0  # a cancelled turn says nothing about health
    assert state.in_flight() == 0


def test_snapshot_shape():
    state, clock = make_state()
    for i, ttft_s in enumerate((0.04, 0.05, 0.06, 0.30)):
        state.report([AttemptStarted("sim-fast", (f"t{i}", 0))])
        clock.advance(0.2)
        state.observe([ok("sim-fast", ttft_s, lease=(f"t{i}", 0))])
    entry = state.snapshot()["sim-fast"]
    assert entry["group"] == "voice-fast" and entry["strategy"] == "latency-based"
    assert entry["breaker"] == "closed" and entry["in_flight"] == 0 and entry["turns"] == 4
    assert entry["ttft_s"] == pytest.approx(0.30)  # the peak
    assert entry["ttft_p50_s"] == 0.05 and entry["ttft_p99_s"] == 0.30
    assert entry["score"] == pytest.approx(0.30) and entry["outcomes"] == {"ok": 4}
    assert state.snapshot()["sim-slow"]["ttft_s"] is None and state.snapshot()["sim-slow"]["score"] == 0.0
    expected = {"group", "strategy", "score", "in_flight", "breaker", "ttft_s", "total_s", "ttft_p50_s", "ttft_p99_s",
                "turns", "failures", "last_ttft_s", "last_outcome", "outcomes", "oldest_pending_s", "warm_gain_s", "cold_ttft_s", "pinned_conversations"}
    assert set(entry) == expected


# -- tags -------------------------------------------------------------------


def test_plan_keeps_only_endpoints_with_the_requested_tags():
    state, _ = make_state(tags=(("eu",), ("eu", "function-calling"), ("us", "function-calling")), max_attempts=3)
    plan = state.plan("voice-fast", required_tags=["eu"], lease="t1")
    assert sorted(plan.endpoints) == ["sim-fast", "sim-medium"] and plan.max_attempts == 2
    assert state.plan("voice-fast", required_tags=["eu"], has_tools=True, lease="t2").endpoints == ("sim-medium",)
    with pytest.raises(NoEligibleEndpoint, match="'vision'"):
        state.plan("voice-fast", required_tags=["vision"])
    assert sum(s["in_flight"] for s in state.snapshot().values()) == 2  # the refused turn counted nothing


# -- latency signal ---------------------------------------------------------


def test_a_failure_counts_as_a_slow_sample():
    state, _ = make_state(timeouts={"first_token_s": 1.5, "total_s": 30}, latency={"explore_share": 0})
    state.observe([ok("sim-fast", 0.04), ok("sim-medium", 0.12), ok("sim-slow", 0.25)])
    state.observe([AttemptOutcome("sim-fast", OutcomeKind.CONNECT_ERROR, 0.002)])
    assert state.snapshot()["sim-fast"]["ttft_s"] == 1.5  # the first-token deadline, not 2 ms
    assert state.plan("voice-fast").endpoints[0] == "sim-medium"


def test_non_streaming_turns_rank_by_total_time():
    state, _ = make_state(latency={"explore_share": 0})
    state.observe([ok("sim-fast", 0.04, duration_s=2.0), ok("sim-medium", 0.2, duration_s=0.5), ok("sim-slow", 0.3, duration_s=0.9)])
    assert state.plan("voice-fast", stream=True).endpoints[0] == "sim-fast"
    assert state.plan("voice-fast", stream=False).endpoints[0] == "sim-medium"


def test_each_outcome_releases_its_own_lease():
    state, clock = make_state("ordered")
    for i in range(3):
        state.plan("voice-fast", lease=f"t{i}")
        clock.advance(0.1)
    assert state.snapshot()["sim-fast"]["oldest_pending_s"] == pytest.approx(0.3)
    state.observe([ok("sim-fast", 0.04, lease=("t0", 0)), ok("sim-fast", 0.04, lease=("t2", 0))])
    snap = state.snapshot()["sim-fast"]
    assert snap["in_flight"] == 1 and snap["oldest_pending_s"] == pytest.approx(0.2)  # t1 is still out


def test_a_turn_never_reported_is_forgotten_after_the_deadline():
    state, clock = make_state("ordered", timeouts={"first_token_s": 1, "total_s": 10})
    state.plan("voice-fast", lease="t1")
    clock.advance(14.9)
    assert state.snapshot()["sim-fast"]["in_flight"] == 1
    clock.advance(0.2)  # total_s plus 5 s of slack
    assert state.snapshot()["sim-fast"]["in_flight"] == 0


# -- breakers ---------------------------------------------------------------


def fail(endpoint, kind=OutcomeKind.UPSTREAM_ERROR, **kwargs):
    return AttemptOutcome(endpoint, kind, 0.01, **kwargs)


def test_an_open_breaker_moves_the_endpoint_to_the_back():
    state, clock = make_state("ordered", breaker={"consecutive_failures": 2, "cooldown_s": 5})
    state.observe([fail("sim-fast"), fail("sim-fast")])
    assert state.snapshot()["sim-fast"]["breaker"] == "open"
    assert state.plan("voice-fast").endpoints == ("sim-medium", "sim-slow", "sim-fast")
    clock.advance(5)
    assert state.plan("voice-fast", lease="probe").endpoints[0] == "sim-fast"  # half-open: the probe
    assert state.plan("voice-fast", lease="t2").endpoints == ("sim-medium", "sim-slow", "sim-fast")  # one probe only
    state.observe([ok("sim-fast", 0.04)])
    assert state.snapshot()["sim-fast"]["breaker"] == "closed"


def test_never_ejects_every_endpoint_soonest_back_first():
    state, clock = make_state("ordered", breaker={"consecutive_failures": 1, "cooldown_s": 5})
    state.observe([fail("sim-slow")])
    clock.advance(1)
    state.observe([fail("sim-fast")])
    clock.advance(1)
    state.observe([fail("sim-medium")])
    plan = state.plan("voice-fast")
    assert plan.endpoints == ("sim-slow", "sim-fast", "sim-medium") and plan.max_attempts == 3
    assert {s["breaker"] for s in state.snapshot().values()} == {"open"}


def test_retry_after_holds_the_endpoint_out():
    state, clock = make_state("ordered")
    state.observe([fail("sim-fast", OutcomeKind.RATE_LIMITED, http_status=429, retry_after_s=3.0)])
    assert state.plan("voice-fast").endpoints[0] == "sim-medium"
    clock.advance(3.0)
    assert state.plan("voice-fast").endpoints[0] == "sim-fast"


def test_health_checks_feed_the_breaker_only():
    state, clock = make_state("ordered", breaker={"consecutive_failures": 2, "cooldown_s": 5})
    state.plan("voice-fast", lease="t1")
    state.health_checked("sim-fast", OutcomeKind.CONNECT_ERROR)
    state.health_checked("sim-fast", OutcomeKind.TIMEOUT)
    snap = state.snapshot()["sim-fast"]
    assert snap["breaker"] == "open" and snap["in_flight"] == 1 and snap["ttft_s"] is None and snap["turns"] == 0
    clock.advance(5)
    state.health_checked("sim-fast", OutcomeKind.OK)
    assert state.snapshot()["sim-fast"]["breaker"] == "closed"


# -- invariants -------------------------------------------------------------

KINDS = list(OutcomeKind)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("plan"), st.booleans()),
        st.tuples(st.just("started"), st.sampled_from(NAMES)),
        st.tuples(st.just("observe"), st.lists(st.tuples(st.integers(0, 40), st.sampled_from(KINDS)), max_size=5)),
        st.tuples(st.just("close"), st.integers(0, 40)),
        st.tuples(st.just("advance"), st.floats(0, 2)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(ops=ops, strategy=st.sampled_from(["latency-based", "least-busy", "weighted-shuffle", "ordered"]), seed=st.integers(0, 9))
def test_in_flight_is_never_negative_and_matches_leases_held(ops, strategy, seed):
    state, clock = make_state(strategy, seed=seed, breaker={"consecutive_failures": 2, "cooldown_s": 1})
    held: dict[tuple[str, int], str] = {}  # lease -> endpoint, as the test expects it
    closed: set[str] = set()
    turns = 0
    for op, arg in ops:
        if op == "plan":
            turns += 1
            first = state.plan("voice-fast", stream=arg, lease=f"t{turns}").endpoints[0]
            if f"t{turns}" not in closed:  # a closed turn takes no new lease
                held[(f"t{turns}", 0)] = first
        elif op == "started":
            turns += 1
            state.report([AttemptStarted(arg, (f"t{turns}", 1))])
            if f"t{turns}" not in closed:
                held[(f"t{turns}", 1)] = arg
        elif op == "observe":
            outcomes = []
            for turn, kind in arg:  # outcomes of turns held, released already, or never seen
                key = next((k for k in held if k[0] == f"t{turn}"), (f"t{turn}", 0))
                outcomes.append(AttemptOutcome(held.pop(key, NAMES[0]), kind, 0.05,
                                               ttft_s=0.04 if kind is OutcomeKind.OK else None, lease=key))
            state.observe(outcomes)
        elif op == "close":
            state.report([TurnClosed(f"t{arg}")])
            closed.add(f"t{arg}")
            held = {k: v for k, v in held.items() if k[0] != f"t{arg}"}
        else:
            clock.advance(arg)  # stays well under total_s: nothing expires
        in_flight = {name: s["in_flight"] for name, s in state.snapshot().items()}
        assert in_flight == {name: sum(v == name for v in held.values()) for name in NAMES}
        assert state.in_flight() == len(held)


def _chain_config():
    from router.config import parse_config

    def ep(name):
        return {"name": name, "base_url": "http://127.0.0.1:1/v1", "model": "m"}

    return parse_config(
        {
            "model_groups": {
                "voice": {"strategy": "ordered", "fallbacks": ["backup-1", "backup-2"], "max_attempts": 4,
                          "breaker": {"consecutive_failures": 1},
                          "endpoints": [ep("v1"), ep("v2")]},
                "backup-1": {"strategy": "ordered", "endpoints": [{**ep("b1"), "tags": ["function-calling"]}]},
                "backup-2": {"strategy": "ordered", "endpoints": [ep("b2")]},
            }
        }
    )


def test_fallback_chain_walks_groups_in_order_and_bounds_attempts():
    state = RoutingState(_chain_config(), clock=lambda: 10.0)
    plan = state.plan("voice")
    assert plan.endpoints == ("v1", "v2", "b1", "b2")
    assert plan.max_attempts == 4
    assert state.plan("backup-1").endpoints == ("b1",)  # not transitive, no self


def test_open_breaker_moves_an_endpoint_behind_the_whole_chain():
    state = RoutingState(_chain_config(), clock=lambda: 10.0)
    state.plan("voice")
    state.observe([AttemptOutcome("v1", OutcomeKind.UPSTREAM_ERROR, 0.1)])
    assert state.plan("voice").endpoints == ("v2", "b1", "b2", "v1")


def test_tags_skip_groups_without_eligible_endpoints_but_keep_the_chain():
    from router.routing_state import check_eligible

    config = _chain_config()
    state = RoutingState(config, clock=lambda: 10.0)
    assert state.plan("voice", has_tools=True).endpoints == ("b1",)
    check_eligible(config, "voice", has_tools=True)  # a fallback qualifies: no error
    with pytest.raises(Exception) as info:
        check_eligible(config, "voice", ["eu"])
    assert "eu" in str(info.value)


def test_fallbacks_must_name_other_existing_groups():
    from router.config import parse_config
    from router.errors import ConfigError

    base = {"name": "x", "base_url": "http://h/v1", "model": "m"}
    for fallbacks, reason in ((["nope"], "unknown group"), (["g"], "itself")):
        with pytest.raises(ConfigError, match=reason):
            parse_config({"model_groups": {"g": {"fallbacks": fallbacks, "endpoints": [base]}}})
