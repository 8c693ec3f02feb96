"""Prometheus text exposition (format 0.0.4) of the turn metrics.

Families, each labelled ``model_group`` and ``endpoint`` (``""`` for turns
no endpoint served):

- ``nemo_turn_ttft_seconds`` and ``nemo_turn_total_seconds``: histograms
  with the voice buckets (``le`` from 0.01 to 30, then ``+Inf``),
  ``_sum`` and ``_count``;
- ``nemo_turns_total`` and ``nemo_turn_errors_total``: counters.

They are lifetime totals (since the hub started), not the rolling window:
Prometheus takes ``rate()`` over counters and treats a decrease as a
restart, so a windowed count would read as a restart every slot. Quantiles
in Prometheus come from ``histogram_quantile(0.99, sum by (le, model_group)
(rate(nemo_turn_ttft_seconds_bucket[5m])))``; the sketch-based windowed
p50/p99 are in ``GET /v1/metrics``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from nemo_turnlog.latency import LatencyDistribution, TurnStats
from nemo_turnlog.metrics import SeriesKey

__all__ = ["CONTENT_TYPE", "render_prometheus"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_HISTOGRAMS = (
    ("nemo_turn_ttft_seconds", "ttft", "Time to first token of a turn, in seconds."),
    ("nemo_turn_total_seconds", "total", "Total latency of a turn that ended ok, in seconds."),
)
_COUNTERS = (
    ("nemo_turns_total", "turns", "Turns served or attempted."),
    ("nemo_turn_errors_total", "errors", "Turns that ended in an error."),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(key: SeriesKey, extra: str = "") -> str:
    group, endpoint = key
    return f'{{model_group="{_escape(group)}",endpoint="{_escape(endpoint)}"{extra}}}'


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _le(bound: float) -> str:
    return f',le="{_number(bound)}"'


def _histogram(name: str, key: SeriesKey, dist: LatencyDistribution) -> list[str]:
    lines = [f"{name}_bucket{_labels(key, _le(le))} {count}" for le, count in dist.cumulative_buckets()]
    lines.append(f"{name}_sum{_labels(key)} {_number(dist.sum_s)}")
    lines.append(f"{name}_count{_labels(key)} {dist.count}")
    return lines


def render_prometheus(lifetime: Mapping[SeriesKey, TurnStats]) -> str:
    """The text body for ``GET /metrics`` (serve with ``CONTENT_TYPE``)."""
    keys = sorted(lifetime)
    lines: list[str] = []
    for name, attribute, help_text in _HISTOGRAMS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        for key in keys:
            lines += _histogram(name, key, getattr(lifetime[key], attribute))
    for name, attribute, help_text in _COUNTERS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        lines += [f"{name}{_labels(key)} {getattr(lifetime[key], attribute)}" for key in keys]
    return "\n".join(lines) + "\n"
