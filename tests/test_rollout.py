"""A redeploy's carry-over of routing state (``router.rollout``,
``RoutingState.reconfigured``): pure, fake clock, seeded rng. State goes on
only for endpoints that still exist at the same upstream; every lease
count still returns to zero across a reconfigure."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.config import parse_config
from router.errors import ModelNotFound
from router.outcome import AttemptOutcome, AttemptStarted, OutcomeKind, TurnClosed
from router.rollout import ActorNames, carried_endpoints, config_digest, probe_targets, same_upstream
from router.routing_state import RoutingState
from router.simulation import ManualClock


def endpoint(name: str, url: str = "http://sim/v1", **extra) -> dict:
    return {"name": name, "base_url": url, "model": "m"} | extra


def config(groups: dict, **extra):
    return parse_config({"model_groups": groups, **extra})


V1 = config({
    "voice": {"strategy": "ordered", "endpoints": [endpoint("a"), endpoint("b"), endpoint("c")]},
    "text": {"strategy": "ordered", "endpoints": [endpoint("t")]},
})


def ok(name: str, ttft_s: float, lease=None) -> AttemptOutcome:
    return AttemptOutcome(name, OutcomeKind.OK, ttft_s + 0.1, ttft_s=ttft_s, lease=lease)


def failed(name: str, lease=None) -> AttemptOutcome:
    return AttemptOutcome(name, OutcomeKind.UPSTREAM_ERROR, 0.05, lease=lease)


def state_of(cfg=V1) -> tuple[RoutingState, ManualClock]:
    clock = ManualClock(100.0)
    return RoutingState(cfg, clock=clock, rng=random.Random(0)), clock


# -- which endpoints carry over ----------------------------------------------


def test_same_upstream_is_provider_url_and_model_not_weight_or_tags():
    a = V1.endpoint("a")
    assert same_upstream(a, a.model_copy(update={"weight": 5.0, "tags": ("eu",)}))
    assert same_upstream(a, a.model_copy(update={"base_url": "http://sim/v1/"}))
    assert not same_upstream(a, a.model_copy(update={"base_url": "http://other/v1"}))
    assert not same_upstream(a, a.model_copy(update={"model": "m2"}))


def test_carried_endpoints_are_those_in_both_at_the_same_upstream_in_any_group():
    v2 = config({
        "voice": {"endpoints": [endpoint("a"), endpoint("b", "http://moved/v1")]},
        "other": {"endpoints": [endpoint("c"), endpoint("new")]},  # c moved group: still carried
    })
    assert carried_endpoints(V1, v2) == {"a", "c"}


def test_actor_names_follow_the_tracker_name_and_the_probers_targets():
    cfg = config({"g": {"endpoints": [endpoint("a")]}}, deployments={"tracker_name": "tr"})
    names = ActorNames.of(cfg)
    assert (names.tracker, names.metrics_hub, names.cache, names.keystore) == ("tr", "tr-metrics", "tr-cache", "nemo-keystore")
    checked = config({"g": {"endpoints": [endpoint("a")], "health_check": {"enabled": True}}}, deployments={"tracker_name": "tr"})
    assert probe_targets(cfg) == () and len(probe_targets(checked)) == 1
    assert names.prober(cfg) != names.prober(checked) and names.prober(checked).startswith("tr-health-")
    named = config({"g": {"endpoints": [endpoint("a")]}}, metrics={"hub_name": "hub"})
    assert ActorNames.of(named).metrics_hub == "hub"


def test_config_digest_is_stable_and_tells_configs_apart():
    assert config_digest(V1.model_groups["voice"]) == config_digest(V1.model_groups["voice"])
    assert config_digest(V1.model_groups["voice"]) != config_digest(V1.model_groups["text"])


# -- what the routing state carries ------------------------------------------


def test_estimates_breakers_and_turns_in_flight_carry_over_for_kept_endpoints():
    state, clock = state_of()
    state.report([ok("a", 0.3), ok("b", 0.2)])
    breaker_cfg = {"consecutive_failures": 2, "cooldown_s": 30}
    state = RoutingState(config({
        "voice": {"strategy": "ordered", "breaker": breaker_cfg, "endpoints": [endpoint("a"), endpoint("b"), endpoint("c")]},
        "text": {"strategy": "ordered", "endpoints": [endpoint("t")]},
    }), clock=clock, rng=random.Random(0))
    state.report([ok("a", 0.3), ok("b", 0.2), failed("c"), failed("c")])
    for cached_tokens, ttft_s in [(0, 0.4), (900, 0.1)] * 3:  # a's cold and warm TTFTs
        state.report([AttemptOutcome("a", OutcomeKind.OK, ttft_s + 0.1, ttft_s=ttft_s, cached_tokens=cached_tokens)])
    plan = state.plan("voice", lease="turn-1")
    assert plan.endpoints[0] == "a" and state.snapshot()["c"]["breaker"] == "open"
    before = state.snapshot()

    v2 = config({
        "voice": {"strategy": "least-busy", "endpoints": [endpoint("a"), endpoint("b", "http://moved/v1"), endpoint("c"), endpoint("d")]},
        "added": {"endpoints": [endpoint("e")]},
    })
    state = state.reconfigured(v2)
    after = state.snapshot()
    for field in ("ttft_s", "cold_ttft_s", "warm_gain_s", "total_s", "turns", "in_flight", "breaker", "outcomes"):
        assert after["a"][field] == before["a"][field], field
    assert after["a"]["cold_ttft_s"] is not None and after["a"]["warm_gain_s"] is not None
    assert after["a"]["in_flight"] == 1 and state.in_flight() == 1
    assert after["c"]["breaker"] == "open"  # still open until its cooldown ends
    assert after["b"]["turns"] == 0 and after["b"]["ttft_s"] is None  # moved upstream: fresh
    assert after["d"]["turns"] == 0 and "t" not in after
    assert {s["strategy"] for s in after.values() if s["group"] == "voice"} == {"least-busy"}
    assert state.plan("added").endpoints == ("e",)
    with pytest.raises(ModelNotFound):
        state.plan("text")
    state.report([ok("a", 0.3, lease=("turn-1", 0))])  # the turn planned before ends after
    assert state.in_flight() == 0


def test_new_breaker_thresholds_judge_the_carried_breaker():
    state, clock = state_of(config({"g": {"breaker": {"consecutive_failures": 5}, "endpoints": [endpoint("a"), endpoint("b")]}}))
    state.report([failed("a"), failed("a")])
    state = state.reconfigured(config({"g": {"breaker": {"consecutive_failures": 3}, "endpoints": [endpoint("a"), endpoint("b")]}}))
    assert state.snapshot()["a"]["breaker"] == "closed"
    state.report([failed("a")])  # the third in a row, under the new threshold
    assert state.snapshot()["a"]["breaker"] == "open"


def test_leases_on_a_removed_endpoint_are_dropped_and_their_late_reports_ignored():
    state, _ = state_of()
    state.plan("text", lease="t1")
    state.report([AttemptStarted("b", ("t2", 1))])
    assert state.in_flight() == 2
    state = state.reconfigured(config({"voice": {"endpoints": [endpoint("a"), endpoint("c")]}}))
    assert state.in_flight() == 0
    state.report([ok("t", 0.1, lease=("t1", 0)), failed("b", lease=("t2", 1)), TurnClosed("t1")])
    assert state.in_flight() == 0


def test_conversations_keep_their_turn_numbers_and_pins_to_kept_endpoints():
    state, _ = state_of(config({"voice": {"strategy": "ordered", "endpoints": [endpoint("a"), endpoint("b")]}}))
    for conversation in ("c1", "c2"):
        state.plan("voice", lease=f"{conversation}-1", conversation=("k", conversation, None))
    state.report([ok("a", 0.1, lease=("c1-1", 0))])
    assert state.snapshot()["a"]["pinned_conversations"] == 2
    state = state.reconfigured(config({"voice": {"strategy": "ordered", "endpoints": [endpoint("b"), endpoint("a")]}}))
    assert state.snapshot()["a"]["pinned_conversations"] == 2
    plan = state.plan("voice", lease="c1-2", conversation=("k", "c1", None))
    assert plan.conversation_turn == 2 and plan.endpoints[0] == "a"  # pinned, though b is first now
    state = state.reconfigured(config({"voice": {"endpoints": [endpoint("b")]}}))
    assert state.snapshot()["b"]["pinned_conversations"] == 0
    assert state.plan("voice", conversation=("k", "c1", None)).conversation_turn == 3


def test_an_unchanged_config_carries_everything():
    state, _ = state_of()
    state.report([ok("a", 0.3), ok("t", 0.1)])
    state.plan("voice", lease="x")
    before = state.snapshot()
    after = state.reconfigured(V1).snapshot()
    for name in before:
        for field in ("ttft_s", "turns", "in_flight", "breaker", "strategy"):
            assert after[name][field] == before[name][field]


# -- property: counts return to zero, carried state only where it applies ---

UPSTREAMS = ("http://u1/v1", "http://u2/v1")


@st.composite
def configs(draw):
    names = draw(st.lists(st.sampled_from("abcdef"), min_size=1, max_size=6, unique=True))
    split = draw(st.integers(0, len(names) - 1))
    groups = {"g1": names[: split + 1], "g2": names[split + 1:]}
    return config({
        group: {
            "strategy": draw(st.sampled_from(["ordered", "least-busy", "latency-based", "weighted-shuffle"])),
            "endpoints": [endpoint(n, draw(st.sampled_from(UPSTREAMS))) for n in members],
        }
        for group, members in groups.items() if members
    })


@st.composite
def histories(draw):
    """Steps: plan a turn, start a retry, end an attempt, close a turn, or redeploy."""
    return draw(st.lists(st.one_of(
        st.tuples(st.just("plan"), st.integers(0, 1)),
        st.tuples(st.just("retry"), st.integers(0, 30), st.sampled_from("abcdef")),
        st.tuples(st.just("end"), st.integers(0, 30), st.booleans()),
        st.tuples(st.just("close"), st.integers(0, 30)),
        st.tuples(st.just("redeploy"), configs()),
    ), max_size=40))


@settings(max_examples=200, deadline=None)
@given(configs(), histories())
def test_counts_return_to_zero_and_only_kept_endpoints_carry_state(first, history):
    clock = ManualClock(100.0)
    state = RoutingState(first, clock=clock, rng=random.Random(0))
    current = first
    attempts: dict[tuple, str] = {}  # every lease taken -> its endpoint
    turns: list[str] = []
    for step in history:
        clock.advance(0.01)
        if step[0] == "plan":
            groups = list(current.model_groups)
            turn = f"t{len(turns)}"
            plan = state.plan(groups[step[1] % len(groups)], lease=turn)
            turns.append(turn)
            attempts[(turn, 0)] = plan.endpoints[0]
        elif step[0] == "retry" and turns:
            turn = turns[step[1] % len(turns)]
            key = (turn, 1 + sum(1 for k in attempts if k[0] == turn))
            if key[1] < 3:
                attempts[key] = step[2]
                state.report([AttemptStarted(step[2], key)])
        elif step[0] == "end" and attempts:
            key = list(attempts)[step[1] % len(attempts)]
            state.report([ok(attempts[key], 0.1, lease=key) if step[2] else failed(attempts[key], lease=key)])
        elif step[0] == "close" and turns:
            state.report([TurnClosed(turns[step[1] % len(turns)])])
        elif step[0] == "redeploy":
            new = step[1]
            before = state.snapshot()
            state = state.reconfigured(new)
            after = state.snapshot()
            kept = carried_endpoints(current, new)
            assert set(after) == {e.name for g in new.model_groups.values() for e in g.endpoints}
            for name, row in after.items():
                if name in kept:
                    assert (row["turns"], row["in_flight"], row["ttft_s"]) == (
                        before[name]["turns"], before[name]["in_flight"], before[name]["ttft_s"])
                else:
                    assert (row["turns"], row["in_flight"], row["ttft_s"], row["breaker"]) == (0, 0, None, "closed")
            current = new
        snapshot = state.snapshot()
        assert state.in_flight() == sum(row["in_flight"] for row in snapshot.values())
        assert all(row["in_flight"] >= 0 for row in snapshot.values())
    state.report([TurnClosed(turn) for turn in turns])
    assert state.in_flight() == 0
    assert all(row["in_flight"] == 0 for row in state.snapshot().values())


def test_serve_deploys_config_sha256_must_match_the_file(tmp_path):
    import hashlib

    from deployments.app import _check_digest

    path = tmp_path / "router.yaml"
    path.write_text("model_groups: {}\n")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    _check_digest(str(path), None)
    _check_digest(str(path), digest.upper())
    with pytest.raises(ValueError, match="config_sha256"):
        _check_digest(str(path), "0" * 64)
