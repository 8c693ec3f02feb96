"""The Prometheus exposition parses with prometheus_client, in the classic text
format and OpenMetrics, and counts what was observed, merged across replicas."""

from __future__ import annotations

import pickle

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from nemo_turnlog.export_testing import sample_turn
from nemo_turnlog.latency import TurnStats
from nemo_turnlog.metrics import MetricsAggregator, MetricsRecorder
from nemo_turnlog.prometheus import render, render_prometheus, upstream_states
from nemo_turnlog.record import AttemptRecord


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
    assert {"nemo_turn_ttft_seconds", "nemo_turn_total_seconds", "nemo_turns", "nemo_turn_errors"} <= set(families)
    assert all(not family.samples for family in families.values())


# -- the new series, both formats, merging ------------------------------------

FAILED_FIRST = [AttemptRecord("sim-slow", "upstream_5xx", 0.2, 503), AttemptRecord("sim-fast", "ok", 0.8, 200)]


def _turns() -> list:
    return [
        sample_turn(cost_usd=0.002, gateway_overhead_s=0.0012),
        sample_turn(cost_usd=0.003, gateway_overhead_s=0.004, attempts=FAILED_FIRST, fallback_count=1, hedged=True),
        sample_turn(endpoint="sim-slow", attempts=[AttemptRecord("sim-slow", "timeout", 5.0)], status="error", ttft_s=None),
        sample_turn(cache_hit=True, attempts=[], prompt_tokens=40, completion_tokens=12),
        sample_turn(attempts=[AttemptRecord("sim-slow", "cancelled", 0.1), AttemptRecord("sim-fast", "ok", 0.3, 200)], fallback_count=1),
    ]


def _openmetrics_families(body: bytes) -> dict:
    return {family.name: family for family in openmetrics_families(body.decode("utf-8"))}


def _value(families: dict, family: str, sample: str, **labels) -> float:
    [found] = _samples(families[family], sample, **labels)
    return found.value


def test_new_series_count_tokens_spend_overhead_fallbacks_hedges_cache_hits_and_failures():
    hub = MetricsAggregator()
    for record in _turns():
        hub.observe(record)
    routing = upstream_states({
        "sim-fast": {"group": "voice-fast", "in_flight": 3, "breaker": "closed"},
        "sim-slow": {"group": "voice-fast", "in_flight": 0, "breaker": "open"},
    })
    fast = {"model_group": "voice-fast", "upstream": "sim-fast"}
    body, content_type = render(hub.lifetime(), routing, accept=None)
    assert content_type.startswith("text/plain; version=0.0.4")
    families = _families(body.decode("utf-8"))
    assert _value(families, "nemo_prompt_tokens", "nemo_prompt_tokens_total", **fast) == 4 * 40
    assert _value(families, "nemo_completion_tokens", "nemo_completion_tokens_total", **fast) == 4 * 12
    assert _value(families, "nemo_spend_usd", "nemo_spend_usd_total", **fast) == pytest.approx(0.005)
    assert _value(families, "nemo_fallbacks", "nemo_fallbacks_total", **fast) == 2
    assert _value(families, "nemo_hedged_turns", "nemo_hedged_turns_total", **fast) == 1
    assert _value(families, "nemo_cache_hits", "nemo_cache_hits_total", **fast) == 1
    overhead = families["nemo_gateway_overhead_seconds"]
    assert overhead.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in _samples(overhead, "nemo_gateway_overhead_seconds_bucket", **fast)}
    assert buckets["0.001"] == 0 and buckets["0.002"] == 1 and buckets["0.005"] == 2 and buckets["+Inf"] == 2
    # Failures under the endpoint that failed, whichever served the turn; a cancelled attempt is none.
    failures = {tuple(s.labels[k] for k in ("upstream", "kind", "status")): s.value for s in families["nemo_upstream_failures"].samples}
    assert failures == {("sim-slow", "upstream_5xx", "503"): 1, ("sim-slow", "timeout", ""): 1}
    assert _value(families, "nemo_upstream_in_flight", "nemo_upstream_in_flight", **fast) == 3
    assert _value(families, "nemo_upstream_breaker_state", "nemo_upstream_breaker_state", model_group="voice-fast", upstream="sim-slow") == 2
    # The older families keep their ``endpoint`` label beside ``upstream``.
    assert _value(families, "nemo_turns", "nemo_turns_total", endpoint="sim-fast", **fast) == 4


def test_openmetrics_by_content_negotiation_parses_with_the_same_values():
    hub = MetricsAggregator()
    for record in _turns():
        hub.observe(record)
    hub.observe(sample_turn(model_group='we"ird\\group\nline', endpoint="é\\"))
    body, content_type = render(hub.lifetime(), (), accept="application/openmetrics-text; version=1.0.0,text/plain;q=0.5")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    families = _openmetrics_families(body)
    fast = {"model_group": "voice-fast", "upstream": "sim-fast"}
    assert _value(families, "nemo_spend_usd", "nemo_spend_usd_total", **fast) == pytest.approx(0.005)
    assert _value(families, "nemo_turn_ttft_seconds", "nemo_turn_ttft_seconds_count", **fast) == 4
    weird = {"model_group": 'we"ird\\group\nline', "upstream": "é\\"}
    assert _value(families, "nemo_turns", "nemo_turns_total", **weird) == 1  # escaped and parsed back by the library
    classic = _families(render(hub.lifetime())[0].decode("utf-8"))
    assert _value(classic, "nemo_turns", "nemo_turns_total", **weird) == 1


def _all_samples(families: dict) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}


def test_two_replicas_deltas_merge_to_what_one_replica_would_have_rendered():
    clock = lambda: 1_000.0  # noqa: E731
    replicas = [MetricsRecorder(10.0, clock), MetricsRecorder(10.0, clock)]
    whole, merged = MetricsAggregator(clock=clock), MetricsAggregator(clock=clock)
    for index, record in enumerate(_turns() * 3):
        replicas[index % 2].observe(record)
        whole.observe(record)
    for replica in replicas:
        merged.merge(pickle.loads(pickle.dumps(replica.take())))  # as the hub receives it, through Ray
    families = _families(render(merged.lifetime())[0].decode("utf-8"))
    expected = _families(render(whole.lifetime())[0].decode("utf-8"))
    assert _all_samples(families) == pytest.approx(_all_samples(expected))  # sums differ only in float rounding
    assert _value(families, "nemo_spend_usd", "nemo_spend_usd_total", model_group="voice-fast", upstream="sim-fast") == pytest.approx(0.015)


def test_stats_from_an_older_replica_without_the_new_fields_still_merge():
    old = TurnStats()
    old.observe(sample_turn())
    for name in ("prompt_tokens", "completion_tokens", "overhead", "fallbacks", "hedged", "cache_hits", "failures"):
        delattr(old, name)
    merged = TurnStats()
    merged.merge(old)
    assert merged.turns == 1 and merged.prompt_tokens == 0 and merged.failures == {}
