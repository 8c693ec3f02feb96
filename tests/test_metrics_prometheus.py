"""The Prometheus text parses with prometheus_client and counts what was observed."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nemo_turnlog.export_testing import sample_turn
from nemo_turnlog.metrics import MetricsAggregator
from nemo_turnlog.prometheus import render_prometheus


def _families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def _samples(family, name: str, **labels) -> list:
    return [s for s in family.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def test_histograms_and_counters_parse_with_the_right_counts():
    hub = MetricsAggregator()
    ttfts = [0.008, 0.03, 0.12, 0.12, 0.6, 2.5, 45.0]
    for ttft in ttfts:
        hub.observe(sample_turn(ttft_s=ttft, total_s=ttft + 0.5))
    hub.observe(sample_turn(endpoint=None, status="error", ttft_s=None, model_group='we"ird\\group'))
    families = _families(render_prometheus(hub.lifetime()))

    ttft = families["nemo_turn_ttft_seconds"]
    assert ttft.type == "histogram"
    key = {"model_group": "voice-fast", "endpoint": "sim-fast"}
    buckets = {s.labels["le"]: s.value for s in _samples(ttft, "nemo_turn_ttft_seconds_bucket", **key)}
    assert buckets["0.01"] == 1 and buckets["0.05"] == 2 and buckets["0.15"] == 4
    assert buckets["3.0"] == 6 and buckets["30.0"] == 6 and buckets["+Inf"] == 7
    assert list(buckets.values()) == sorted(buckets.values())  # cumulative
    assert _samples(ttft, "nemo_turn_ttft_seconds_count", **key)[0].value == 7
    assert _samples(ttft, "nemo_turn_ttft_seconds_sum", **key)[0].value == pytest.approx(sum(ttfts))

    turns, errors = families["nemo_turns"], families["nemo_turn_errors"]
    assert turns.type == "counter" and errors.type == "counter"
    assert _samples(turns, "nemo_turns_total", **key)[0].value == 7
    weird = {"model_group": 'we"ird\\group', "endpoint": ""}
    assert _samples(errors, "nemo_turn_errors_total", **weird)[0].value == 1
    assert families["nemo_turn_total_seconds"].type == "histogram"


def test_empty_metrics_render_valid_text():
    families = _families(render_prometheus({}))
    assert set(families) == {"nemo_turn_ttft_seconds", "nemo_turn_total_seconds", "nemo_turns", "nemo_turn_errors"}
