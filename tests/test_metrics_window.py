"""MetricsRecorder and MetricsAggregator: slots, window expiry, merging replicas, JSON."""

from __future__ import annotations

import pickle

import pytest

from nemo_turnlog.export_testing import sample_turn
from nemo_turnlog.metrics import MetricsAggregator, MetricsDelta, MetricsRecorder


class FakeClock:
    def __init__(self, now_s: float = 1_000_000.0):
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def test_turns_expire_once_their_slot_leaves_the_window():
    clock = FakeClock()
    hub = MetricsAggregator(window_s=60, slot_s=10, clock=clock)
    hub.observe(sample_turn(ttft_s=0.1))
    clock.now_s += 30
    hub.observe(sample_turn(ttft_s=0.3))
    assert hub.by_group()["voice-fast"].turns == 2
    assert hub.by_group(window_s=20)["voice-fast"].turns == 1
    clock.now_s += 35  # the first turn's slot now starts more than 60 s ago
    summary = hub.by_group()["voice-fast"]
    assert summary.turns == 1 and summary.ttft_p50_s == pytest.approx(0.3, rel=0.01)
    clock.now_s += 60
    assert hub.by_group() == {}
    assert hub.lifetime()[("voice-fast", "sim-fast")].turns == 2  # Prometheus totals never expire


def test_a_delta_for_an_expired_slot_counts_only_in_lifetime():
    clock = FakeClock()
    replica = MetricsRecorder(slot_s=10, clock=clock)
    replica.observe(sample_turn())
    clock.now_s += 500
    hub = MetricsAggregator(window_s=60, slot_s=10, clock=clock)
    hub.merge(replica.take())
    assert hub.window() == {} and hub.lifetime()[("voice-fast", "sim-fast")].turns == 1


def _turns():
    endpoints = ["sim-fast", "sim-medium", None]
    for i in range(300):
        endpoint = endpoints[i % 3]
        status = "error" if endpoint is None else "ok"
        yield i, sample_turn(endpoint=endpoint, status=status, ttft_s=0.05 + (i % 37) / 50, total_s=0.4 + (i % 11) / 7)


def test_two_replicas_merged_equal_one_replica_that_saw_every_turn():
    clock = FakeClock()
    replicas = [MetricsRecorder(slot_s=10, clock=clock) for _ in range(2)]
    single = MetricsRecorder(slot_s=10, clock=clock)
    for i, record in _turns():
        clock.now_s += 0.5
        replicas[i % 2].observe(record)
        single.observe(record)
    merged, alone = (MetricsAggregator(window_s=300, slot_s=10, clock=clock) for _ in range(2))
    for replica in replicas:
        merged.merge(pickle.loads(pickle.dumps(replica.take())))  # as Ray would ship it
    alone.merge(single.take())
    assert merged.to_json() == alone.to_json()
    assert merged.to_json(window_s=60) == alone.to_json(window_s=60)


def test_json_shape_rates_and_unserved_turns():
    clock = FakeClock()
    hub = MetricsAggregator(window_s=300, slot_s=10, clock=clock)
    clock.now_s += 600  # older than the window: span is the full window
    for _ in range(8):
        hub.observe(sample_turn())
    for _ in range(2):
        hub.observe(sample_turn(endpoint=None, status="error", ttft_s=None))
    body = hub.to_json()
    group = body["model_groups"]["voice-fast"]
    assert body["window_s"] == 300 and 290 <= body["span_s"] <= 300
    assert (group["turns"], group["errors"], group["error_rate"]) == (10, 2, 0.2)
    assert group["turns_per_min"] == pytest.approx(10 * 60 / body["span_s"])
    assert set(group["endpoints"]) == {"sim-fast", ""}
    assert group["endpoints"][""]["ttft_p99_s"] is None
    assert group["ttft_p99_s"] == pytest.approx(0.12, rel=0.01)


def test_take_resets_and_bad_arguments_fail():
    recorder = MetricsRecorder(slot_s=10)
    assert recorder.take() is None
    recorder.observe(sample_turn())
    assert recorder.take().turns() == 1 and recorder.take() is None
    hub = MetricsAggregator(window_s=60, slot_s=10)
    with pytest.raises(ValueError):
        hub.window(window_s=120)
    with pytest.raises(ValueError):
        hub.merge(MetricsDelta(slot_s=5))
