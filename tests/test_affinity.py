"""Cache-warm affinity that yields to latency: the pure decision, the pin
table, and the routing state that keeps both (fake clock, seeded rng)."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.affinity import Pins, prefer_pinned
from router.config import AffinityConfig, parse_config
from router.outcome import AttemptOutcome, OutcomeKind
from router.routing_state import RoutingState
from router.simulation import ManualClock
from router.strategies import EndpointLoad

NAMES = ("ep-a", "ep-b", "ep-c")


def load(name, latency_s=None, **extra):
    return EndpointLoad(name=name, position=NAMES.index(name), latency_s=latency_s, **extra)


# -- the decision -------------------------------------------------------------


def test_no_pin_leaves_the_ranking_alone():
    ranked = [load("ep-a", 0.05), load("ep-b", 0.1)]
    order, choice = prefer_pinned(ranked, None, eligible=NAMES, margin_s=0.1)
    assert order == ranked and choice.reason == "no pin" and choice.note == "no pin"


def test_a_pin_within_the_margin_goes_first():
    ranked = [load("ep-a", 0.05), load("ep-b", 0.12), load("ep-c", 0.3)]
    order, choice = prefer_pinned(ranked, "ep-b", eligible=NAMES, margin_s=0.1)
    assert [x.name for x in order] == ["ep-b", "ep-a", "ep-c"]
    assert choice.followed and choice.note == "pinned"


def test_a_pin_slower_than_the_best_by_more_than_the_margin_yields():
    ranked = [load("ep-a", 0.05), load("ep-c", 0.3)]
    order, choice = prefer_pinned(ranked, "ep-c", eligible=NAMES, margin_s=0.1)
    assert order == ranked and not choice.followed
    assert choice.note == "slower by 250 ms: left ep-c"


def test_lateness_counts_towards_a_pinned_endpoint_s_latency():
    stuck = load("ep-b", 0.06, oldest_pending_s=2.0, usual_pending_s=0.1)  # a turn 1.9 s overdue
    _, choice = prefer_pinned([load("ep-a", 0.05), stuck], "ep-b", eligible=NAMES, margin_s=0.1)
    assert not choice.followed and choice.reason.startswith("slower by 19")


def test_an_unhealthy_or_ineligible_pin_is_not_followed():
    ranked = [load("ep-a", 0.05)]
    assert prefer_pinned(ranked, "ep-b", eligible=NAMES, margin_s=1)[1].reason == "unhealthy"
    assert prefer_pinned(ranked, "ep-b", eligible=("ep-a",), margin_s=1)[1].reason == "not eligible"


def test_a_pin_with_no_latency_data_is_kept():
    order, choice = prefer_pinned([load("ep-a", 0.05), load("ep-b")], "ep-b", eligible=NAMES, margin_s=0.0)
    assert order[0].name == "ep-b" and choice.followed


loads = st.lists(
    st.builds(
        load,
        st.sampled_from(NAMES),
        st.one_of(st.none(), st.floats(0, 5)),
        oldest_pending_s=st.one_of(st.none(), st.floats(0, 5)),
        usual_pending_s=st.one_of(st.none(), st.floats(0, 5)),
    ),
    max_size=3,
    unique_by=lambda x: x.name,
)


@given(loads, st.one_of(st.none(), st.sampled_from(NAMES)), st.floats(0, 2))
def test_property_affinity_only_ever_moves_the_pin_to_the_front_and_only_within_the_margin(ranked, pinned, margin_s):
    order, choice = prefer_pinned(ranked, pinned, eligible=NAMES, margin_s=margin_s)
    assert sorted(x.name for x in order) == sorted(x.name for x in ranked)  # nothing added or lost
    rest = [x for x in order if not (choice.followed and x.name == pinned)]
    assert rest == [x for x in ranked if not (choice.followed and x.name == pinned)]  # the others keep their order
    if choice.followed:
        assert order[0].name == pinned
        pinned_load = next(x for x in ranked if x.name == pinned)
        known = [x.latency_s + x.lateness_s for x in ranked if x.latency_s is not None]
        if pinned_load.latency_s is not None:
            assert pinned_load.latency_s + pinned_load.lateness_s - min(known) <= margin_s
    if pinned is not None and pinned not in [x.name for x in ranked]:
        assert not choice.followed and choice.reason == "unhealthy"  # never preferred


# -- the pin table ------------------------------------------------------------


def test_pins_expire_are_scoped_by_key_and_bounded():
    clock = ManualClock(0.0)
    pins = Pins(AffinityConfig(ttl_s=300, max_pins=2), clock)
    pins.pin(("key-1", "call"), "ep-a")
    assert pins.get(("key-2", "call")) is None  # another key's conversation of the same id
    clock.advance(299)
    assert pins.get(("key-1", "call")) == "ep-a"
    clock.advance(1)
    assert pins.get(("key-1", "call")) is None
    for i in range(5):
        pins.pin(("k", f"c{i}"), "ep-a")
    assert len(pins) == 2 and pins.get(("k", "c4")) == "ep-a" and pins.get(("k", "c0")) is None


def test_the_margin_is_configured_else_measured_else_the_default():
    assert Pins(AffinityConfig(margin_s=0.3), ManualClock()).margin_s(0.05) == 0.3
    assert Pins(AffinityConfig(), ManualClock()).margin_s(0.05) == 0.05
    assert Pins(AffinityConfig(default_margin_s=0.2), ManualClock()).margin_s(None) == 0.2


# -- in the routing state -----------------------------------------------------


def make_state(seed=0, affinity=None, **group):
    endpoints = [{"name": n, "base_url": "http://sim/v1", "model": "m"} for n in NAMES]
    settings = {"strategy": "latency-based", "latency": {"explore_share": 0.0}, "endpoints": endpoints, **group}
    if affinity is not None:
        settings["affinity"] = affinity
    clock = ManualClock(100.0)
    return RoutingState(parse_config({"model_groups": {"g": settings}}), clock=clock, rng=random.Random(seed)), clock


class Driver:
    """Plans turns of conversations and reports their outcomes."""

    def __init__(self, state, clock):
        self.state, self.clock, self.n = state, clock, 0

    def turn(self, conversation, ttfts, *, key="k", fail_first=False, cached_tokens=None):
        """One turn: served by the plan's first endpoint (or its second, when
        the first fails) with that endpoint's TTFT from ``ttfts``."""
        self.n += 1
        lease = f"t{self.n}"
        plan = self.state.plan("g", lease=lease, conversation=(key, conversation, None))
        served = plan.endpoints[1] if fail_first else plan.endpoints[0]
        events = []
        if fail_first:
            events.append(AttemptOutcome(plan.endpoints[0], OutcomeKind.DISCONNECTED, 0.2, ttft_s=0.05, lease=(lease, 0)))
        ttft_s = ttfts[served]
        events.append(AttemptOutcome(served, OutcomeKind.OK, ttft_s + 0.1, ttft_s=ttft_s, lease=(lease, len(events)), cached_tokens=cached_tokens))
        self.clock.advance(0.5)
        self.state.report(events)
        return plan, served


def warm_up(driver, ttfts):
    """Give every endpoint latency data (turns without a conversation)."""
    for _ in range(6):
        for name in NAMES:
            driver.state.report([AttemptOutcome(name, OutcomeKind.OK, ttfts[name] + 0.1, ttft_s=ttfts[name])])
    driver.clock.advance(0.5)


def test_a_conversation_stays_on_its_endpoint_while_within_the_margin_and_leaves_when_slowed():
    state, clock = make_state(affinity={"margin_s": 0.1})
    driver = Driver(state, clock)
    ttfts = {"ep-a": 0.05, "ep-b": 0.10, "ep-c": 0.30}
    warm_up(driver, ttfts)
    plan, served = driver.turn("call", ttfts)
    assert served == "ep-a" and plan.affinity == "no pin" and plan.conversation_turn == 1
    ttfts["ep-a"] = 0.12  # a little slower than ep-b now: the warm cache is worth more
    for _ in range(5):
        driver.turn("other", {**ttfts, "ep-a": 0.12})
    plan, served = driver.turn("call", ttfts)
    assert served == "ep-a" and plan.affinity == "pinned"
    ttfts["ep-a"] = 0.60  # now far slower than ep-b
    state.report([AttemptOutcome("ep-a", OutcomeKind.OK, 0.7, ttft_s=0.6)])
    plan, served = driver.turn("call", ttfts)
    assert served == "ep-b" and plan.affinity.startswith("slower by") and plan.affinity.endswith("left ep-a")
    plan, served = driver.turn("call", ttfts)  # the pin moved with it
    assert served == "ep-b" and plan.affinity == "pinned" and plan.conversation_turn == 4


def test_a_turn_that_failed_over_pins_where_it_finished():
    state, clock = make_state(affinity={"margin_s": 10})
    driver = Driver(state, clock)
    ttfts = {"ep-a": 0.05, "ep-b": 0.10, "ep-c": 0.30}
    warm_up(driver, ttfts)
    first, served = driver.turn("call", ttfts, fail_first=True)
    assert served == first.endpoints[1]
    plan, again = driver.turn("call", ttfts)
    assert again == served and plan.affinity == "pinned"


def test_an_open_breaker_breaks_the_pin():
    state, clock = make_state(affinity={"margin_s": 10}, breaker={"consecutive_failures": 1, "cooldown_s": 30})
    driver = Driver(state, clock)
    ttfts = {"ep-a": 0.05, "ep-b": 0.10, "ep-c": 0.30}
    warm_up(driver, ttfts)
    _, served = driver.turn("call", ttfts)
    state.report([AttemptOutcome(served, OutcomeKind.UPSTREAM_ERROR, 0.01, http_status=500)])
    plan, moved = driver.turn("call", ttfts)
    assert moved != served and plan.affinity == f"unhealthy: left {served}"


def test_pins_expire_and_are_per_key():
    state, clock = make_state(affinity={"margin_s": 10, "ttl_s": 60})
    driver = Driver(state, clock)
    ttfts = {"ep-a": 0.05, "ep-b": 0.10, "ep-c": 0.30}
    warm_up(driver, ttfts)
    driver.turn("call", ttfts)
    assert driver.turn("call", ttfts, key="other-key")[0].affinity == "no pin"
    clock.advance(61)
    assert driver.turn("call", ttfts)[0].affinity == "no pin"


def test_disabled_affinity_does_nothing():
    state, clock = make_state(affinity={"enabled": False})
    plan = Driver(state, clock).turn("call", {n: 0.1 for n in NAMES})[0]
    assert plan.affinity is None and plan.conversation_turn == 1


def test_the_default_margin_comes_from_the_measured_warm_gain():
    state, clock = make_state()  # margin_s unset: measured, else 0.1
    for _ in range(4):
        state.report([AttemptOutcome("ep-b", OutcomeKind.OK, 0.5, ttft_s=0.40, cached_tokens=0)])
        state.report([AttemptOutcome("ep-b", OutcomeKind.OK, 0.2, ttft_s=0.10, cached_tokens=500)])
    assert state.snapshot()["ep-b"]["warm_gain_s"] == pytest.approx(0.30, abs=0.02)
    assert state.snapshot()["ep-a"]["warm_gain_s"] is None


def cold_and_warm(state, clock, cold, warm, warm_turns=6):
    """Each endpoint: one cold turn (``cold``), then ``warm_turns`` turns of
    calls pinned there whose prompts were cached (``warm``; None: none),
    30 s apart, so the all-turns estimates settle on the warm turns."""
    for name, ttft_s in cold.items():
        state.report([AttemptOutcome(name, OutcomeKind.OK, ttft_s + 0.1, ttft_s=ttft_s, cached_tokens=0)])
    for _ in range(warm_turns):
        clock.advance(30)
        for name, ttft_s in warm.items():
            state.report([AttemptOutcome(name, OutcomeKind.OK, ttft_s + 0.1, ttft_s=ttft_s, cached_tokens=800)])


def test_a_new_call_starts_where_cold_turns_start_soonest_not_where_warm_turns_are_quick():
    state, clock = make_state()
    # ep-c serves pinned calls warm (27 ms), so its all-turns estimate is the
    # lowest; but a new call is cold everywhere, and cold, ep-a is quickest.
    cold_and_warm(state, clock, {"ep-a": 0.070, "ep-b": 0.080, "ep-c": 0.090}, {"ep-c": 0.027})
    assert state.plan("g").endpoints[0] == "ep-c"  # a turn with no conversation: all turns' estimates
    plan = state.plan("g", lease="t1", conversation=("k", "new call", None))
    assert plan.affinity == "no pin" and plan.endpoints == ("ep-a", "ep-b", "ep-c")
    assert state.snapshot()["ep-c"]["cold_ttft_s"] == pytest.approx(0.090)


def test_a_slowdown_seen_only_on_warm_turns_keeps_new_calls_away():
    state, clock = make_state()
    # ep-a's only cold turn was quick, but its pinned calls' warm turns now
    # take 200 ms: a new call would wait at least that.
    cold_and_warm(state, clock, {"ep-a": 0.070, "ep-b": 0.080, "ep-c": 0.090}, {"ep-a": 0.200}, warm_turns=1)
    plan = state.plan("g", lease="t1", conversation=("k", "new call", None))
    assert plan.endpoints == ("ep-b", "ep-c", "ep-a")


def test_a_call_that_breaks_away_goes_where_cold_turns_start_soonest():
    state, clock = make_state(affinity={"margin_s": 0.05})
    cold_and_warm(state, clock, {"ep-a": 0.070, "ep-b": 0.080, "ep-c": 0.090}, {"ep-c": 0.027})
    state.plan("g", lease="t1", conversation=("k", "call", None))  # pinned to ep-a
    state.report([AttemptOutcome("ep-a", OutcomeKind.OK, 0.5, ttft_s=0.4, cached_tokens=0, lease=("t1", 0))])
    plan = state.plan("g", lease="t2", conversation=("k", "call", None))
    assert plan.affinity.startswith("slower by") and plan.endpoints[0] == "ep-b"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.001, 2.0), st.sampled_from([None, 0, 800]), st.floats(0, 60)), max_size=30))
def test_property_the_cold_estimate_is_never_below_the_all_turns_estimate(samples):
    state, clock = make_state()
    endpoint = state._endpoints["ep-a"]
    for ttft_s, cached_tokens, wait_s in samples:
        state.report([AttemptOutcome("ep-a", OutcomeKind.OK, ttft_s, ttft_s=ttft_s, cached_tokens=cached_tokens)])
        clock.advance(wait_s)
        cold, every = endpoint.load(clock(), cold=True).latency_s, endpoint.load(clock()).latency_s
        assert (cold is None) == (every is None)
        assert every is None or cold >= every
        assert endpoint.load(clock(), stream=False, cold=True) == endpoint.load(clock(), stream=False)


# -- the invariants, over random histories --------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("turn"), st.integers(0, 12), st.booleans()),
        st.tuples(st.just("slow"), st.sampled_from(NAMES), st.floats(0.01, 2.0)),
        st.tuples(st.just("fail"), st.sampled_from(NAMES), st.integers(1, 3)),
        st.tuples(st.just("wait"), st.floats(0, 120)),
    ),
    max_size=80,
)


@settings(max_examples=60, deadline=None)
@given(ops, st.integers(0, 3))
def test_property_pins_bounded_unhealthy_never_preferred_and_slow_pins_move(history, seed):
    margin_s = 0.1
    state, clock = make_state(seed, affinity={"margin_s": margin_s, "max_pins": 4, "ttl_s": 300},
                              breaker={"consecutive_failures": 2, "cooldown_s": 30, "max_cooldown_s": 30})
    driver = Driver(state, clock)
    ttfts = {n: 0.05 * (i + 1) for i, n in enumerate(NAMES)}
    for op in history:
        if op[0] == "turn":
            conversation, fail_first = op[1], op[2]
            snapshot = state.snapshot()
            plan, served = driver.turn(str(conversation), ttfts, fail_first=fail_first)
            first = plan.endpoints[0]
            healthy = [n for n in NAMES if snapshot[n]["breaker"] == "closed"]
            if plan.affinity == "pinned" and healthy:
                assert snapshot[first]["breaker"] != "open"  # an open breaker's endpoint is never preferred
            if plan.affinity and plan.affinity.startswith("slower by"):
                assert first != plan.affinity.rsplit(" ", 1)[1]  # a slow pin moved
        elif op[0] == "slow":
            ttfts[op[1]] = op[2]
            state.report([AttemptOutcome(op[1], OutcomeKind.OK, op[2] + 0.1, ttft_s=op[2])])
        elif op[0] == "fail":
            state.report([AttemptOutcome(op[1], OutcomeKind.UPSTREAM_ERROR, 0.01, http_status=500)] * op[2])
        else:
            clock.advance(op[1])
        assert len(state._pins["g"]) <= 4
        assert state.in_flight() == 0


def test_the_plan_pins_at_once_and_the_served_endpoint_re_pins_when_its_outcome_arrives():
    state, clock = make_state(affinity={"margin_s": 10})
    warm_up(Driver(state, clock), {"ep-a": 0.05, "ep-b": 0.10, "ep-c": 0.30})
    first = state.plan("g", lease="t1", conversation=("k", "call", None))
    right_behind = state.plan("g", lease="t2", conversation=("k", "call", None))  # before t1's outcome
    assert right_behind.affinity == "pinned" and right_behind.endpoints[0] == first.endpoints[0]
    assert state.snapshot()[first.endpoints[0]]["pinned_conversations"] == 1
    served = first.endpoints[1]  # t1 failed over and finished elsewhere
    state.report([AttemptOutcome(served, OutcomeKind.OK, 0.2, ttft_s=0.1, lease=("t1", 1))])
    assert state.plan("g", conversation=("k", "call", None)).endpoints[0] == served
    assert state.snapshot()[served]["pinned_conversations"] == 1
    assert sum(s["pinned_conversations"] for s in state.snapshot().values()) == 1
