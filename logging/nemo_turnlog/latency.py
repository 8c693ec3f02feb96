"""Mergeable latency statistics: what a set of turns looked like.

``LatencyDistribution`` keeps two views of the same samples (seconds):

- exact counts in fixed buckets for voice, ``VOICE_BUCKETS_S`` (10 ms to
  30 s, roughly log-spaced, plus +Inf), with the sum and count: what a
  Prometheus histogram exposes;
- a DDSketch (the ``ddsketch`` package, Datadog's reference
  implementation of Masson, Rim and Lee, VLDB 2019) with relative accuracy
  ``RELATIVE_ACCURACY`` = 1 %: the percentiles. A quantile read from it is
  within 1 % of a sample of the right rank (for ``q`` the sample at rank
  ``q * (n - 1)``, nearest below or above), whatever the distribution.
  Buckets alone would be off by up to a bucket's width (0.5 s between 1
  and 1.5 s), too coarse for an alert threshold. Sketches merge exactly:
  merging two replicas' sketches gives the sketch of all their samples,
  and they stay small (a few hundred bins between 10 ms and 30 s).

``TurnStats`` is the per-key unit the metrics keep: turn and error counts
and the TTFT and total-latency distributions. What counts: every turn is a
turn; ``status == "error"`` is an error (``cancelled`` is not: the client
left); TTFT is observed whenever a first token came; total latency only for
turns that ended ``ok``, since a failure's duration says how long failing
took and a cancellation's how long the user waited.

Beside them (for Prometheus): prompt and completion tokens, spend in USD,
the gateway's own overhead (``gateway_overhead_s``, in ``OVERHEAD_BUCKETS_S``:
0.5 ms to 1 s, finer than the voice buckets), fallbacks (attempts after the
first, the turn log's ``fallback_count``), hedged turns, cache hits, and
failed upstream attempts counted by ``(upstream, kind, status)``: every
attempt whose outcome is neither ``ok`` nor ``cancelled`` (a lost hedge race
or a client that left is no failure of the upstream's), under the endpoint
that failed, which is not the one that served the turn; ``status`` is the
upstream's HTTP status as text, ``""`` when no response came.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from ddsketch import DDSketch

from nemo_turnlog.record import TurnRecord

__all__ = ["OVERHEAD_BUCKETS_S", "RELATIVE_ACCURACY", "VOICE_BUCKETS_S", "FailureKey", "LatencyDistribution", "TurnStats"]

VOICE_BUCKETS_S: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
)  # fmt: skip
OVERHEAD_BUCKETS_S: tuple[float, ...] = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
FailureKey = tuple[str, str, str]  # (upstream endpoint, outcome kind, HTTP status or "")
_NOT_FAILURES = frozenset({"ok", "cancelled"})
RELATIVE_ACCURACY = 0.01


class LatencyDistribution:
    """Latency samples in seconds: bucket counts, sum, count and a sketch.
    ``bounds``: the buckets' upper bounds (default ``VOICE_BUCKETS_S``)."""

    __slots__ = ("bucket_counts", "sum_s", "count", "_sketch", "bounds")

    def __init__(self, bounds: tuple[float, ...] = VOICE_BUCKETS_S) -> None:
        self.bounds = bounds
        # bucket_counts[i] counts samples <= bounds[i] and above the previous
        # bound; the last entry counts samples above the last bound (+Inf).
        self.bucket_counts = [0] * (len(bounds) + 1)
        self.sum_s = 0.0
        self.count = 0
        self._sketch = DDSketch(RELATIVE_ACCURACY)

    def observe(self, value_s: float) -> None:
        value_s = max(value_s, 0.0)
        self.bucket_counts[bisect_left(self.bounds, value_s)] += 1
        self.sum_s += value_s
        self.count += 1
        self._sketch.add(value_s)

    def merge(self, other: LatencyDistribution) -> None:
        if other._bounds() != self._bounds():
            raise ValueError("cannot merge distributions with different buckets")
        for index, count in enumerate(other.bucket_counts):
            self.bucket_counts[index] += count
        self.sum_s += other.sum_s
        self.count += other.count
        if other.count:
            self._sketch.merge(other._sketch)

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile in seconds (within 1 %), or None with no samples."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"a quantile is between 0 and 1, got {q}")
        return self._sketch.get_quantile_value(q) if self.count else None

    def cumulative_buckets(self) -> Iterator[tuple[float, int]]:
        """``(le, samples <= le)`` for each bound, ending with ``(inf, count)``."""
        running = 0
        for bound, count in zip((*self._bounds(), float("inf")), self.bucket_counts):
            running += count
            yield bound, running

    def _bounds(self) -> tuple[float, ...]:
        return getattr(self, "bounds", VOICE_BUCKETS_S)  # one pickled by an older version has none

    def __repr__(self) -> str:
        return f"LatencyDistribution(count={self.count}, sum_s={self.sum_s:.3f})"


class TurnStats:
    """Counts and latency distributions of a set of turns; see the module
    docstring for what each counts. Mergeable: ``a.merge(b)`` makes ``a``
    the stats of both sets."""

    __slots__ = (
        "turns", "errors", "ttft", "total", "cost_usd", "prompt_tokens", "completion_tokens", "overhead",
        "fallbacks", "hedged", "cache_hits", "failures",
    )  # fmt: skip

    def __init__(self) -> None:
        self.turns = 0
        self.errors = 0
        self.cost_usd = 0.0  # what the priced turns cost
        self.ttft = LatencyDistribution()
        self.total = LatencyDistribution()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.overhead = LatencyDistribution(OVERHEAD_BUCKETS_S)
        self.fallbacks = 0
        self.hedged = 0
        self.cache_hits = 0
        self.failures: dict[FailureKey, int] = {}

    def observe(self, record: TurnRecord) -> None:
        self.turns += 1
        if record.status == "error":
            self.errors += 1
        if record.ttft_s is not None:
            self.ttft.observe(record.ttft_s)
        if record.status == "ok":
            self.total.observe(record.total_s)
        if record.cost_usd:
            self.cost_usd += record.cost_usd
        self.prompt_tokens += record.prompt_tokens or 0
        self.completion_tokens += record.completion_tokens or 0
        if record.gateway_overhead_s is not None:
            self.overhead.observe(record.gateway_overhead_s)
        self.fallbacks += record.fallback_count
        self.hedged += record.hedged
        self.cache_hits += record.cache_hit
        for attempt in record.attempts:
            if attempt.outcome not in _NOT_FAILURES:
                key = (attempt.endpoint, attempt.outcome, "" if attempt.http_status is None else str(attempt.http_status))
                self.failures[key] = self.failures.get(key, 0) + 1

    def merge(self, other: TurnStats) -> None:
        # A replica of an older version sends stats without the newer fields.
        self.turns += other.turns
        self.errors += other.errors
        self.cost_usd += getattr(other, "cost_usd", 0.0)
        self.ttft.merge(other.ttft)
        self.total.merge(other.total)
        self.prompt_tokens += getattr(other, "prompt_tokens", 0)
        self.completion_tokens += getattr(other, "completion_tokens", 0)
        overhead = getattr(other, "overhead", None)
        if overhead is not None:
            self.overhead.merge(overhead)
        self.fallbacks += getattr(other, "fallbacks", 0)
        self.hedged += getattr(other, "hedged", 0)
        self.cache_hits += getattr(other, "cache_hits", 0)
        for key, count in getattr(other, "failures", {}).items():
            self.failures[key] = self.failures.get(key, 0) + count

    def __repr__(self) -> str:
        return f"TurnStats(turns={self.turns}, errors={self.errors})"
