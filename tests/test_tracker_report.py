"""The tracker shell's report handling, without Ray: a caller's and an
ingress's channels arrive in any order relative to each other, and the
counts still balance (leases: router.pending, router.routing_state)."""

from router.config import parse_config
from router.outcome import AttemptOutcome, AttemptStarted, OutcomeKind, TurnClosed

from deployments.tracker import LatencyTracker


def tracker():
    config = parse_config({"model_groups": {"g": {"strategy": "ordered", "endpoints": [
        {"name": n, "base_url": "http://x/v1", "model": "m"} for n in ("a", "b")]}}})
    return LatencyTracker(config)


def in_flight(t, name):
    return t.snapshot()[name]["in_flight"]


def test_a_snapshot_turn_is_in_flight_from_its_start_until_its_outcome():
    t = tracker()
    assert t.plan(("g", (), False, 1, True, None)).endpoints[0] == "a"
    assert in_flight(t, "a") == 0  # ranking only
    t.report([AttemptStarted("a", ("t1", 0))])
    assert in_flight(t, "a") == 1
    t.report([AttemptOutcome("a", OutcomeKind.OK, 0.2, ttft_s=0.05, lease=("t1", 0))])
    assert in_flight(t, "a") == 0


def test_start_and_outcome_in_one_batch_balance():
    t = tracker()
    t.report([AttemptStarted("a", ("t1", 0)), AttemptOutcome("a", OutcomeKind.OK, 0.2, ttft_s=0.05, lease=("t1", 0))])
    assert in_flight(t, "a") == 0
    assert t.snapshot()["a"]["turns"] == 1


def test_a_fallback_attempt_is_counted_from_its_start_and_released_by_its_outcome():
    t = tracker()
    t.plan(("g", (), False, 1, True, "t1"))  # holds (t1, 0) at a
    t.report([AttemptOutcome("a", OutcomeKind.UPSTREAM_ERROR, 0.01, http_status=503, lease=("t1", 0)),
              AttemptStarted("b", ("t1", 1))])
    assert in_flight(t, "a") == 0 and in_flight(t, "b") == 1
    t.report([AttemptOutcome("b", OutcomeKind.OK, 0.2, ttft_s=0.05, lease=("t1", 1))])
    assert in_flight(t, "b") == 0
    assert t.snapshot()["b"]["turns"] == 1


def test_a_turn_closed_by_the_ingress_releases_what_a_lost_caller_held():
    t = tracker()
    t.plan(("g", (), False, 1, True, "t1"))
    t.report([AttemptStarted("b", ("t1", 1))])  # the caller hedged, then died
    t.report([TurnClosed("t1")])  # the ingress's channel
    assert in_flight(t, "a") == 0 and in_flight(t, "b") == 0
    # The caller's late reports change nothing: no double release, no late start.
    t.report([AttemptStarted("a", ("t1", 2)), AttemptOutcome("a", OutcomeKind.CANCELLED, 0.1, lease=("t1", 0))])
    assert in_flight(t, "a") == 0 and in_flight(t, "b") == 0


def test_an_outcome_racing_the_close_releases_once():
    t = tracker()
    t.plan(("g", (), False, 1, True, "t1"))
    t.plan(("g", (), False, 1, True, "t2"))
    assert in_flight(t, "a") == 2
    t.report([TurnClosed("t1"), TurnClosed("t1")])
    t.report([AttemptOutcome("a", OutcomeKind.CANCELLED, 0.1, lease=("t1", 0))])
    assert in_flight(t, "a") == 1  # t2 is still in flight
