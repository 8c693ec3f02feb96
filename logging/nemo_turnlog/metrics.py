"""Rolling-window turn metrics, recorded per replica and merged in one place.

Keys are ``(model_group, endpoint)``; ``endpoint`` is ``""`` for turns
that no endpoint served. Time is cut into slots of ``slot_s`` seconds
(default 10) numbered ``floor(wall_clock_s / slot_s)``: wall time, so that
every replica numbers the same slot alike.

- ``MetricsRecorder`` (one per caller replica): ``observe(record)`` adds the
  turn to ``TurnStats`` for its key and the current slot, and keeps the
  record (a reference, in a deque of at most ``recent_max``) for the
  dashboard's recent turns; ``take()`` returns what accumulated since the
  last ``take`` as a ``MetricsDelta`` (the kept records made into compact
  ``TurnRow``s there, off the turn's path) and starts afresh. Cheap: two
  sketch inserts, two bisects and a deque append per turn.
- ``MetricsAggregator`` (one per cluster, in the ``MetricsHub``): ``merge``s
  deltas into a ring of slots covering ``window_s`` (default 300 s), older
  slots expiring, and into lifetime totals for Prometheus. Because
  ``TurnStats`` merge exactly, merging every replica's deltas gives the
  same counts and percentiles as one replica that saw every turn.

A window of ``window_s`` seconds holds the slots that start at or after
``now - window_s``, so it covers between ``window_s - slot_s`` and
``window_s`` seconds. ``turns_per_min`` divides by the span actually
covered (shorter while the aggregator is younger than the window, and at
least one slot), so it is not diluted right after a start.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

from nemo_turnlog.latency import TurnStats
from nemo_turnlog.recent_turns import TurnRow
from nemo_turnlog.record import TurnRecord

__all__ = ["MetricsAggregator", "MetricsDelta", "MetricsRecorder", "SeriesKey", "WindowSummary", "merge_into"]

SeriesKey = tuple[str, str]  # (model_group, endpoint); endpoint "" when none served


def _key(record: TurnRecord) -> SeriesKey:
    return (record.model_group, record.endpoint or "")


@dataclass(slots=True)
class MetricsDelta:
    """Stats accumulated by one replica: ``slots[slot index][key]``; the
    last turns' rows, oldest first (``recent``), and how many turns were
    counted but not kept as rows (``recent_dropped``: more than the
    recorder's ``recent_max`` in one delta)."""

    slot_s: float
    slots: dict[int, dict[SeriesKey, TurnStats]] = field(default_factory=dict)
    recent: list[TurnRow] = field(default_factory=list)
    recent_dropped: int = 0

    def turns(self) -> int:
        return sum(s.turns for by_key in self.slots.values() for s in by_key.values())


RECENT_MAX = 1000  # rows per delta (a second's worth at 60k turns per minute on one replica)


class MetricsRecorder:
    """Accumulates a replica's turns into a ``MetricsDelta``; thread-safe.
    ``recent_max``: the records kept per delta for the recent turns (0:
    none)."""

    def __init__(self, slot_s: float = 10.0, clock: Callable[[], float] = time.time, recent_max: int = RECENT_MAX):
        if slot_s <= 0:
            raise ValueError(f"slot_s must be positive, got {slot_s}")
        self._slot_s = slot_s
        self._clock = clock
        self._lock = threading.Lock()
        self._delta = MetricsDelta(slot_s)
        self._recent_max = recent_max
        self._recent: deque[TurnRecord] = deque(maxlen=recent_max)
        self._observed = 0

    def observe(self, record: TurnRecord) -> None:
        slot = math.floor(self._clock() / self._slot_s)
        with self._lock:
            by_key = self._delta.slots.setdefault(slot, {})
            stats = by_key.get(_key(record))
            if stats is None:
                stats = by_key[_key(record)] = TurnStats()
            stats.observe(record)
            self._recent.append(record)
            self._observed += 1

    @property
    def pending(self) -> bool:
        return bool(self._delta.slots)

    def take(self) -> MetricsDelta | None:
        """What accumulated since the last call, or None if nothing did."""
        with self._lock:
            if not self._delta.slots:
                return None
            delta, self._delta = self._delta, MetricsDelta(self._slot_s)
            recent, self._recent = self._recent, deque(maxlen=self._recent_max)
            observed, self._observed = self._observed, 0
        delta.recent = [TurnRow.of(record) for record in recent]
        delta.recent_dropped = observed - len(recent)
        return delta


@dataclass(frozen=True, slots=True)
class WindowSummary:
    """One key's (or group's) turns over a window; latencies in seconds,
    None when there was nothing to measure."""

    turns: int
    errors: int
    error_rate: float | None
    turns_per_min: float
    ttft_p50_s: float | None
    ttft_p99_s: float | None
    total_p50_s: float | None
    total_p99_s: float | None
    spend_usd_per_hour: float = 0.0  # the window's priced turns, at the rate of an hour

    @classmethod
    def of(cls, stats: TurnStats, span_s: float) -> WindowSummary:
        return cls(
            turns=stats.turns,
            errors=stats.errors,
            error_rate=stats.errors / stats.turns if stats.turns else None,
            turns_per_min=stats.turns * 60.0 / span_s,
            ttft_p50_s=stats.ttft.quantile(0.5),
            ttft_p99_s=stats.ttft.quantile(0.99),
            total_p50_s=stats.total.quantile(0.5),
            total_p99_s=stats.total.quantile(0.99),
            spend_usd_per_hour=stats.cost_usd * 3600.0 / span_s,
        )


class MetricsAggregator:
    """Merged metrics of every replica: a rolling window and lifetime totals.

    Not thread-safe: the hub calls it from one event loop. ``clock`` is
    wall time in seconds (``time.time``), the same base the recorders use.
    """

    def __init__(self, window_s: float = 300.0, slot_s: float = 10.0, clock: Callable[[], float] = time.time):
        if slot_s <= 0 or window_s < slot_s:
            raise ValueError(f"need 0 < slot_s <= window_s, got slot_s={slot_s}, window_s={window_s}")
        self.window_s = window_s
        self.slot_s = slot_s
        self._clock = clock
        self._started_s = clock()
        self._slots: dict[int, dict[SeriesKey, TurnStats]] = {}
        self._lifetime: dict[SeriesKey, TurnStats] = {}

    def merge(self, delta: MetricsDelta) -> None:
        """Add a replica's delta; slots already out of the window only count
        in the lifetime totals."""
        if delta.slot_s != self.slot_s:
            raise ValueError(f"delta slots are {delta.slot_s} s, this aggregator's are {self.slot_s} s")
        oldest = self._oldest_slot(self.window_s)
        for slot, by_key in delta.slots.items():
            for key, stats in by_key.items():
                merge_into(self._lifetime, key, stats)
                if slot >= oldest:
                    merge_into(self._slots.setdefault(slot, {}), key, stats)
        self._expire()

    def observe(self, record: TurnRecord) -> None:
        """Add one turn now (single-process use and tests)."""
        recorder = MetricsRecorder(self.slot_s, self._clock)
        recorder.observe(record)
        self.merge(recorder.take())

    def window(self, window_s: float | None = None) -> dict[SeriesKey, TurnStats]:
        """Merged stats per key over the last ``window_s`` (default: all)."""
        oldest = self._oldest_slot(self._checked(window_s))
        merged: dict[SeriesKey, TurnStats] = {}
        for slot, by_key in self._slots.items():
            if slot >= oldest:
                for key, stats in by_key.items():
                    merge_into(merged, key, stats)
        return merged

    def slot(self, slot: int) -> Mapping[SeriesKey, TurnStats]:
        """One slot's merged stats per key (empty once out of the window)."""
        return self._slots.get(slot, {})

    def oldest_slot(self) -> int:
        """The oldest slot the window holds now."""
        return self._oldest_slot(self.window_s)

    def current_slot(self) -> int:
        """The slot turns ending now fall in."""
        return math.floor(self._clock() / self.slot_s)

    def lifetime(self) -> Mapping[SeriesKey, TurnStats]:
        """Totals since this aggregator started (for Prometheus counters)."""
        return self._lifetime

    def span_s(self, window_s: float | None = None) -> float:
        """Seconds the window covers now; at least one slot."""
        now = self._clock()
        start = max(self._oldest_slot(self._checked(window_s)) * self.slot_s, self._started_s)
        return max(now - start, self.slot_s)

    def by_group(self, window_s: float | None = None) -> dict[str, WindowSummary]:
        """Summary per model group (all its endpoints) over the window."""
        groups: dict[str, TurnStats] = {}
        for (group, _), stats in self.window(window_s).items():
            merge_into(groups, group, stats)
        span_s = self.span_s(window_s)
        return {group: WindowSummary.of(stats, span_s) for group, stats in groups.items()}

    def to_json(self, window_s: float | None = None) -> dict:
        """The ``GET /v1/metrics`` body: per model group, then per endpoint."""
        span_s = self.span_s(window_s)
        endpoints: dict[str, dict[str, dict]] = {}
        for (group, endpoint), stats in sorted(self.window(window_s).items()):
            endpoints.setdefault(group, {})[endpoint] = asdict(WindowSummary.of(stats, span_s))
        groups = {
            group: {**asdict(summary), "endpoints": endpoints[group]}
            for group, summary in sorted(self.by_group(window_s).items())
        }
        return {"window_s": self._checked(window_s), "span_s": round(span_s, 3), "model_groups": groups}

    def _checked(self, window_s: float | None) -> float:
        if window_s is None:
            return self.window_s
        if not 0 < window_s <= self.window_s:
            raise ValueError(f"window_s must be in (0, {self.window_s}], got {window_s}")
        return window_s

    def _oldest_slot(self, window_s: float) -> int:
        return math.ceil((self._clock() - window_s) / self.slot_s)

    def _expire(self) -> None:
        oldest = self._oldest_slot(self.window_s)
        for slot in [s for s in self._slots if s < oldest]:
            del self._slots[slot]


def merge_into(target: dict, key: object, stats: TurnStats) -> None:
    existing = target.get(key)
    if existing is None:
        existing = target[key] = TurnStats()
    existing.merge(stats)
