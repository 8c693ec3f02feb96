"""Walking a turn's plan: attempt bound, deadline, and where a request the
upstream rejected goes. Pure, fake clock."""

from router.config import parse_config
from router.errors import ConfigError, UpstreamCannotServe, UpstreamStatusError, UpstreamTimeout
from router.plan_walk import PlanWalk
from router.simulation import ManualClock

import pytest


def _catalog():
    config = parse_config({
        "model_groups": {
            "small": {"endpoints": [{"name": n, "base_url": "http://x/v1", "model": "m"} for n in ("a", "b", "c")],
                      "request_error_fallback": "large"},
            "large": {"endpoints": [{"name": n, "base_url": "http://x/v1", "model": "m"} for n in ("big1", "big2")]},
        }
    })
    return {e.name: (e, g.timeouts) for g in config.model_groups.values() for e in g.endpoints}


def walk(max_attempts=3, deadline_s=10.0, request_error_endpoints=(), clock=None):
    clock = clock or ManualClock(0.0)
    return PlanWalk(("a", "b", "c"), max_attempts, deadline_s, _catalog(), request_error_endpoints=request_error_endpoints, clock=clock)


def names(w):
    out = []
    while (c := w.next()) is not None:
        out.append((c.endpoint.name, c.index))
    return out


def test_walks_the_plan_in_order_within_the_attempt_bound():
    assert names(walk()) == [("a", 0), ("b", 1), ("c", 2)]
    assert names(walk(max_attempts=2)) == [("a", 0), ("b", 1)]


def test_stops_at_the_turn_deadline():
    clock = ManualClock(0.0)
    w = walk(deadline_s=5.0, clock=clock)
    assert w.next().endpoint.name == "a"
    clock.advance(5.0)
    assert w.next() is None


def test_retryable_failures_go_on():
    w = walk()
    w.next()
    assert w.after_failure(UpstreamStatusError("busy", status_code=503, endpoint="a"))
    assert w.after_failure(UpstreamTimeout("slow", endpoint="a"))
    assert w.after_failure(UpstreamCannotServe("no n>1", endpoint="a"))  # another provider may serve it


def test_a_rejected_request_ends_the_turn_without_a_declared_group():
    w = walk()
    w.next()
    assert not w.after_failure(UpstreamStatusError("context too long", status_code=400, endpoint="a"))


def test_a_rejected_request_moves_to_the_declared_group_once():
    w = walk(max_attempts=1, request_error_endpoints=("big1", "big2"))
    assert w.next().endpoint.name == "a"
    assert w.after_failure(UpstreamStatusError("context too long", status_code=400, endpoint="a"))
    nxt = w.next()
    assert nxt.endpoint.name == "big1" and nxt.index == 1  # at least one attempt, despite the bound
    assert w.next() is None
    assert not w.after_failure(UpstreamStatusError("still too long", status_code=400, endpoint="big1"))


def test_request_error_fallback_must_name_another_group():
    for target in ("small", "nope"):
        with pytest.raises(ConfigError) as info:
            parse_config({"model_groups": {"small": {"request_error_fallback": target,
                                                      "endpoints": [{"name": "a", "base_url": "http://x/v1", "model": "m"}]}}})
        assert "request_error_fallback" in str(info.value)


def test_the_plan_ranks_the_declared_group_for_request_errors():
    import random

    from router.routing_state import RoutingState

    config = parse_config({
        "model_groups": {
            "small": {"strategy": "ordered", "request_error_fallback": "large",
                      "endpoints": [{"name": "a", "base_url": "http://x/v1", "model": "m"}]},
            "large": {"strategy": "ordered", "endpoints": [{"name": n, "base_url": "http://x/v1", "model": "m"} for n in ("big1", "big2")]},
        }
    })
    state = RoutingState(config, clock=ManualClock(0.0), rng=random.Random(0))
    plan = state.plan("small")
    assert plan.endpoints == ("a",) and plan.request_error_endpoints == ("big1", "big2")
    assert state.snapshot()["big1"]["in_flight"] == 0  # only the first endpoint is counted at plan time
    assert state.plan("large").request_error_endpoints == ()
