"""Prometheus exposition of the turn metrics, through ``prometheus_client``.

``TurnMetricsCollector`` is a custom collector (``collect()`` yields metric
families) over the hub's merged lifetime ``TurnStats`` and the tracker's
routing state; ``render`` serves it in the classic text format (0.0.4) or
OpenMetrics, whichever the scraper's ``Accept`` header asks for
(``prometheus_client.exposition.choose_encoder``). Names, label escaping
and the ``# EOF`` are the library's.

Families (``model_group`` is the group the client asked for; ``upstream``
the endpoint that served the turn, ``""`` when none did):

- ``nemo_turn_ttft_seconds``, ``nemo_turn_total_seconds``: histograms with
  the voice buckets (10 ms to 30 s); ``nemo_turns_total``,
  ``nemo_turn_errors_total``: counters. These four also carry the label
  ``endpoint`` (same value as ``upstream``) for dashboards made before
  ``upstream`` existed; Prometheus Operator renames a scraped ``endpoint``
  label to ``exported_endpoint``, so new queries use ``upstream``.
- ``nemo_prompt_tokens_total``, ``nemo_completion_tokens_total``,
  ``nemo_spend_usd_total`` (priced turns), ``nemo_fallbacks_total``
  (attempts after the first), ``nemo_hedged_turns_total``,
  ``nemo_cache_hits_total`` (``upstream``: the endpoint whose reply was
  cached): counters.
- ``nemo_gateway_overhead_seconds``: histogram, 0.5 ms to 1 s.
- ``nemo_upstream_failures_total{model_group, upstream, kind, status}``:
  failed attempts, under the endpoint that failed (``kind``: the outcome,
  e.g. ``upstream_5xx``, ``timeout``; ``status``: its HTTP status, ``""``
  when no response came).
- From the tracker, now (``model_group``: the group that defines the
  endpoint): ``nemo_upstream_in_flight`` (turns in flight there, every
  replica's) and ``nemo_upstream_breaker_state`` (0 closed, 1 half-open,
  2 open): gauges.

Counters are lifetime totals (since the hub started), not the rolling
window: Prometheus takes ``rate()`` over counters and treats a decrease as
a restart. Quantiles come from ``histogram_quantile(0.99, sum by (le,
model_group) (rate(nemo_turn_ttft_seconds_bucket[5m])))``; the sketch-based
windowed p50/p99 are in ``GET /v1/metrics``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder
from prometheus_client.utils import floatToGoString

from nemo_turnlog.latency import LatencyDistribution, TurnStats
from nemo_turnlog.metrics import SeriesKey

__all__ = ["CONTENT_TYPE", "BREAKER_STATES", "TurnMetricsCollector", "UpstreamState", "render", "render_prometheus", "upstream_states"]

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}

_LABELS = ("model_group", "upstream")
_LEGACY_LABELS = ("model_group", "upstream", "endpoint")
_HISTOGRAMS = (
    ("nemo_turn_ttft_seconds", "ttft", "Time to first token of a turn, in seconds.", _LEGACY_LABELS),
    ("nemo_turn_total_seconds", "total", "Total latency of a turn that ended ok, in seconds.", _LEGACY_LABELS),
    ("nemo_gateway_overhead_seconds", "overhead", "Router time before a turn's first token left the caller, in seconds.", _LABELS),
)
_COUNTERS = (
    ("nemo_turns", "turns", "Turns served or attempted.", _LEGACY_LABELS),
    ("nemo_turn_errors", "errors", "Turns that ended in an error.", _LEGACY_LABELS),
    ("nemo_prompt_tokens", "prompt_tokens", "Prompt tokens of the turns served.", _LABELS),
    ("nemo_completion_tokens", "completion_tokens", "Completion tokens of the turns served.", _LABELS),
    ("nemo_spend_usd", "cost_usd", "What the priced turns cost, in US dollars.", _LABELS),
    ("nemo_fallbacks", "fallbacks", "Upstream attempts after a turn's first (fallbacks and hedges).", _LABELS),
    ("nemo_hedged_turns", "hedged", "Turns where a second endpoint raced the first for the first token.", _LABELS),
    ("nemo_cache_hits", "cache_hits", "Turns answered from the response cache.", _LABELS),
)


@dataclass(frozen=True, slots=True)
class UpstreamState:
    """One endpoint's routing state now, from the tracker's snapshot."""

    model_group: str
    upstream: str
    in_flight: int
    breaker: str  # a key of BREAKER_STATES


def upstream_states(snapshot: Mapping[str, Mapping]) -> list[UpstreamState]:
    """The gauges' rows from ``LatencyTracker.snapshot()`` (``/v1/routing``)."""
    return [
        UpstreamState(str(state.get("group", "")), name, int(state.get("in_flight", 0)), str(state.get("breaker", "closed")))
        for name, state in sorted(snapshot.items())
    ]


class TurnMetricsCollector:
    """A ``prometheus_client`` collector over merged stats (``lifetime``,
    keyed ``(model_group, endpoint)``) and routing state (``upstreams``)."""

    def __init__(self, lifetime: Mapping[SeriesKey, TurnStats], upstreams: Iterable[UpstreamState] = ()):
        self._lifetime = lifetime
        self._upstreams = tuple(upstreams)

    def collect(self) -> Iterator[Metric]:
        keys = sorted(self._lifetime)
        for name, attribute, help_text, labels in _HISTOGRAMS:
            family = HistogramMetricFamily(name, help_text, labels=labels)
            for key in keys:
                dist = getattr(self._lifetime[key], attribute, None)
                if dist is not None:
                    family.add_metric(_values(key, labels), _buckets(dist), dist.sum_s)
            yield family
        for name, attribute, help_text, labels in _COUNTERS:
            family = CounterMetricFamily(name, help_text, labels=labels)
            for key in keys:
                family.add_metric(_values(key, labels), getattr(self._lifetime[key], attribute, 0))
            yield family
        yield self._failures()
        yield from self._routing()

    def _failures(self) -> Metric:
        family = CounterMetricFamily(
            "nemo_upstream_failures", "Failed upstream attempts, by the endpoint that failed, outcome kind and HTTP status.",
            labels=("model_group", "upstream", "kind", "status"),
        )
        merged: dict[tuple[str, str, str, str], int] = {}
        for (group, _served), stats in self._lifetime.items():
            for (upstream, kind, status), count in getattr(stats, "failures", {}).items():
                key = (group, upstream, kind, status)
                merged[key] = merged.get(key, 0) + count
        for key in sorted(merged):
            family.add_metric(key, merged[key])
        return family

    def _routing(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily("nemo_upstream_in_flight", "Turns in flight at an endpoint, across replicas.", labels=_LABELS)
        breaker = GaugeMetricFamily(
            "nemo_upstream_breaker_state", "An endpoint's circuit breaker: 0 closed, 1 half-open, 2 open.", labels=_LABELS
        )
        for state in self._upstreams:
            in_flight.add_metric((state.model_group, state.upstream), state.in_flight)
            breaker.add_metric((state.model_group, state.upstream), BREAKER_STATES.get(state.breaker, BREAKER_STATES["open"]))
        yield in_flight
        yield breaker


def render(
    lifetime: Mapping[SeriesKey, TurnStats], upstreams: Iterable[UpstreamState] = (), accept: str | None = None
) -> tuple[bytes, str]:
    """The ``GET /metrics`` body and its content type, in the format the
    ``Accept`` header asks for (OpenMetrics or the classic text)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(TurnMetricsCollector(lifetime, upstreams)), content_type


def render_prometheus(lifetime: Mapping[SeriesKey, TurnStats], upstreams: Iterable[UpstreamState] = ()) -> str:
    """The classic text format (serve with ``CONTENT_TYPE``)."""
    return render(lifetime, upstreams)[0].decode("utf-8")


def _values(key: SeriesKey, labels: tuple[str, ...]) -> list[str]:
    """Label values for ``_LABELS`` or ``_LEGACY_LABELS`` (whose ``endpoint`` repeats ``upstream``)."""
    group, endpoint = key
    return [group, endpoint, endpoint][: len(labels)]


def _buckets(dist: LatencyDistribution) -> list[tuple[str, float]]:
    return [(floatToGoString(bound), count) for bound, count in dist.cumulative_buckets()]
