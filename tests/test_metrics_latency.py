"""LatencyDistribution and TurnStats: bucket counts, quantile accuracy, exact merges."""

from __future__ import annotations

import math
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_turnlog.export_testing import sample_turn
from nemo_turnlog.latency import RELATIVE_ACCURACY, VOICE_BUCKETS_S, LatencyDistribution, TurnStats

latencies = st.lists(st.floats(min_value=0.001, max_value=60.0, allow_nan=False), min_size=1, max_size=300)


def _filled(values) -> LatencyDistribution:
    dist = LatencyDistribution()
    for value in values:
        dist.observe(value)
    return dist


def _within_bound(estimate: float, values: list[float], q: float) -> bool:
    """The documented bound: within 1 % of a sample next to rank q * (n - 1)."""
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low, high = ordered[math.floor(rank)], ordered[math.ceil(rank)]
    slack = 1e-9
    return low * (1 - RELATIVE_ACCURACY) - slack <= estimate <= high * (1 + RELATIVE_ACCURACY) + slack


@settings(max_examples=60, deadline=None)
@given(latencies, st.sampled_from([0.0, 0.5, 0.9, 0.99, 1.0]))
def test_quantiles_are_within_one_percent_of_the_sample_at_their_rank(values, q):
    assert _within_bound(_filled(values).quantile(q), values, q)


def test_p50_and_p99_of_a_known_spread():
    values = [i / 1000 for i in range(1, 1001)]  # 1 ms .. 1 s, evenly
    dist = _filled(values)
    assert dist.quantile(0.5) == pytest.approx(0.5, rel=0.011)
    assert dist.quantile(0.99) == pytest.approx(0.99, rel=0.011)


@settings(max_examples=60, deadline=None)
@given(latencies)
def test_bucket_counts_are_exact_and_cumulative(values):
    dist = _filled(values)
    cumulative = list(dist.cumulative_buckets())
    assert [le for le, _ in cumulative] == [*VOICE_BUCKETS_S, math.inf]
    for le, count in cumulative:
        assert count == sum(1 for v in values if v <= le)
    assert dist.count == len(values) and dist.sum_s == pytest.approx(sum(values))


@settings(max_examples=40, deadline=None)
@given(latencies, latencies)
def test_merging_equals_observing_everything(left, right):
    merged = _filled(left)
    merged.merge(_filled(right))
    whole = _filled(left + right)
    assert merged.bucket_counts == whole.bucket_counts and merged.count == whole.count
    for q in (0.0, 0.5, 0.99, 1.0):
        assert merged.quantile(q) == pytest.approx(whole.quantile(q), rel=1e-12)


def test_empty_distribution_has_no_quantile_and_survives_pickling():
    dist = LatencyDistribution()
    assert dist.quantile(0.99) is None
    dist.observe(0.2)
    copy = pickle.loads(pickle.dumps(dist))
    assert copy.count == 1 and copy.quantile(0.5) == pytest.approx(0.2, rel=RELATIVE_ACCURACY)
    with pytest.raises(ValueError):
        dist.quantile(1.5)


def test_turn_stats_count_what_the_docstring_says():
    stats = TurnStats()
    stats.observe(sample_turn(ttft_s=0.1, total_s=0.5))
    stats.observe(sample_turn(status="error", http_status=502, ttft_s=None, total_s=3.0, endpoint=None))
    stats.observe(sample_turn(status="cancelled", ttft_s=0.2, total_s=9.0))
    assert (stats.turns, stats.errors) == (3, 1)
    assert stats.ttft.count == 2  # every turn with a first token
    assert stats.total.count == 1  # only turns that ended ok
