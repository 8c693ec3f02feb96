"""The tracker shell's report handling, without Ray: a snapshot-planned
turn's start travels ahead of its outcome on one ordered channel, so the
counts balance however the batches fall."""

from router.config import parse_config
from router.outcome import AttemptOutcome, OutcomeKind, TurnStarted

from deployments.tracker import LatencyTracker


def tracker():
    config = parse_config({"model_groups": {"g": {"strategy": "ordered", "endpoints": [
        {"name": n, "base_url": "http://x/v1", "model": "m"} for n in ("a", "b")]}}})
    return LatencyTracker(config)


def in_flight(t, name):
    return t.snapshot()[name]["in_flight"]


def test_a_snapshot_turn_is_in_flight_from_its_start_until_its_outcome():
    t = tracker()
    assert t.plan(("g", (), False, True, False)).endpoints[0] == "a"
    assert in_flight(t, "a") == 0  # ranking only
    t.report([TurnStarted("a")])
    assert in_flight(t, "a") == 1
    t.report([AttemptOutcome("a", OutcomeKind.OK, 0.2, ttft_s=0.05)])
    assert in_flight(t, "a") == 0


def test_start_and_outcome_in_one_batch_balance():
    t = tracker()
    t.report([TurnStarted("a"), AttemptOutcome("a", OutcomeKind.OK, 0.2, ttft_s=0.05)])
    assert in_flight(t, "a") == 0
    assert t.snapshot()["a"]["turns"] == 1


def test_a_fallback_attempt_is_counted_and_released_by_its_own_report():
    t = tracker()
    t.plan(("g", (), False, True, True))  # counts a
    t.report([
        AttemptOutcome("a", OutcomeKind.UPSTREAM_ERROR, 0.01, http_status=503),
        AttemptOutcome("b", OutcomeKind.OK, 0.2, ttft_s=0.05, fallback=True),
    ])
    assert in_flight(t, "a") == 0 and in_flight(t, "b") == 0
    assert t.snapshot()["b"]["turns"] == 1
