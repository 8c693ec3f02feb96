"""The tracker's plain state object: pure, no Ray."""

import pytest

from router.defaults import embedded_default
from router.errors import ModelNotFound
from router.outcome import AttemptOutcome, OutcomeKind
from router.routing_state import RoutingState


@pytest.fixture
def state():
    return RoutingState(embedded_default("http://127.0.0.1:1", {}), clock=lambda: 100.0)


def test_plan_is_configured_order_and_counts_first_endpoint_in_flight(state):
    plan = state.plan("voice-fast")
    assert plan.endpoints == ("sim-fast", "sim-medium", "sim-slow")
    assert plan.max_attempts == 3
    assert state.snapshot()["sim-fast"]["in_flight"] == 1


def test_unknown_group_is_model_not_found(state):
    with pytest.raises(ModelNotFound):
        state.plan("nope")


def test_outcomes_release_in_flight_and_never_go_negative(state):
    state.plan("voice-fast")
    state.started(["sim-medium"])
    state.observe(
        [
            AttemptOutcome("sim-fast", OutcomeKind.UPSTREAM_ERROR, 0.1),
            AttemptOutcome("sim-medium", OutcomeKind.OK, 0.3, ttft_s=0.12, fallback=True),
            AttemptOutcome("sim-slow", OutcomeKind.CANCELLED, 0.1),  # never started: must not go below 0
        ]
    )
    snap = state.snapshot()
    assert snap["sim-fast"]["in_flight"] == 0 and snap["sim-fast"]["failures"] == 1
    assert snap["sim-medium"]["last_ttft_s"] == 0.12 and snap["sim-medium"]["failures"] == 0
    assert snap["sim-slow"]["in_flight"] == 0
    assert snap["sim-slow"]["failures"] == 0  # a cancelled turn says nothing about health
