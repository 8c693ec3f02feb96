"""The dashboard's live state, kept where the merged metrics live (the
``MetricsHub``) and sent to browsers as deltas.

``DashboardState`` sits beside the hub's ``MetricsAggregator``: after each
``merge(delta)`` the hub calls ``merged(delta)``, which

- numbers the merge (``version``: 1, 2, ...) and notes, per slot, which
  series it changed: one per ``(model_group, endpoint)`` and one per model
  group (all its endpoints; kept here as merged ``TurnStats`` per slot),
  and one per endpoint an attempt failed on, which may have served none
  of the turns (its ``failed_attempts``: the group's failures there);
- appends the delta's turn rows to the ``RecentTurns`` ring.

``state(since, ...)`` answers a poll: every series point changed after
the cursor ``since`` (a point is one slot of one series: turns, errors,
TTFT and total p50/p99, fallbacks, hedges, cache hits, spend, failed
upstream attempts), the routing
rows changed after it, the preferred endpoint per group, the firing alerts,
and the recent turns after ``turns_since`` that match the filter. A point's
percentiles are computed once per change and cached, however many browsers
poll. With a cursor from another hub (``epoch`` differs: a restart) or none,
the answer is the full state (``reset``: the reader starts afresh).

A reader that applies each answer (replace its points by slot, drop slots
older than ``oldest_slot``, replace routing rows) holds what a full answer
would give it: the property ``tests/test_dashboard_state.py`` checks. Memory
is bounded by the window's slots times the series, plus the ring.

Latencies are seconds, rounded to 0.1 ms; ``slot`` is the slot index
(``floor(unix_s / slot_s)``), as in ``nemo_turnlog.metrics``.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from nemo_turnlog.latency import TurnStats
from nemo_turnlog.metrics import MetricsAggregator, MetricsDelta, merge_into
from nemo_turnlog.recent_turns import ROW_FIELDS, RecentTurns, TurnFilter

__all__ = ["DashboardState", "POINT_FIELDS", "ROUTING_FIELDS", "Since", "preferred_endpoints"]

POINT_FIELDS = (
    "slot", "turns", "errors", "ttft_p50_s", "ttft_p99_s", "total_p50_s", "total_p99_s",
    "fallbacks", "hedged", "cache_hits", "cost_usd", "failed_attempts",
)  # fmt: skip
# What the dashboard shows of the tracker's snapshot (``RoutingState.snapshot``).
ROUTING_FIELDS = ("group", "strategy", "score", "in_flight", "breaker", "ttft_s", "ttft_p50_s", "ttft_p99_s", "turns", "failures")
GROUP = None  # the endpoint part of a group's own series key

SeriesId = tuple[str, str | None]  # (model_group, endpoint; None: the whole group; "": turns no endpoint served)


@dataclass(frozen=True, slots=True)
class Since:
    """A parsed cursor: ``"{epoch}.{version}"``; ``None`` fields: none given."""

    epoch: str | None = None
    version: int = 0

    @classmethod
    def parse(cls, text: str | None) -> Since:
        """ValueError for anything but ``epoch.version`` (or empty)."""
        if not text:
            return cls()
        epoch, _, version = text.partition(".")
        if not epoch.isalnum() or not version.isdigit() or len(text) > 64:
            raise ValueError("since must be a cursor returned by this route")
        return cls(epoch, int(version))


class DashboardState:
    """See the module docstring. ``recent_capacity``: rows the ring holds."""

    def __init__(self, metrics: MetricsAggregator, recent_capacity: int = 5000, epoch: str | None = None):
        self._metrics = metrics
        self.epoch = epoch or secrets.token_hex(4)
        self.recent = RecentTurns(recent_capacity)
        self.recent_dropped = 0  # turns replicas counted but sent no row for
        self._version = 0
        self._changed: dict[int, dict[SeriesId, int]] = {}  # slot -> series -> version of its last change
        self._slot_changed: dict[int, int] = {}  # slot -> version of its last change (skips old slots fast)
        self._groups: dict[int, dict[str, TurnStats]] = {}  # slot -> group -> merged stats
        self._points: dict[tuple[int, SeriesId], tuple[int, list]] = {}  # cache: -> (version, point)
        self._routing: dict[str, tuple[int, list]] = {}  # endpoint -> (version of its last change, row)

    @property
    def version(self) -> int:
        return self._version

    def merged(self, delta: MetricsDelta) -> None:
        """Note what ``delta`` changed (call after ``metrics.merge(delta)``)."""
        self._version += 1
        oldest = self._metrics.oldest_slot()
        for slot, by_key in delta.slots.items():
            if slot < oldest:
                continue
            changed = self._changed.setdefault(slot, {})
            self._slot_changed[slot] = self._version
            groups = self._groups.setdefault(slot, {})
            for key, stats in by_key.items():
                changed[key] = changed[(key[0], GROUP)] = self._version
                for upstream, _, _ in getattr(stats, "failures", {}):
                    changed[(key[0], upstream)] = self._version
                merge_into(groups, key[0], stats)
        self.recent.extend(getattr(delta, "recent", ()))
        self.recent_dropped += getattr(delta, "recent_dropped", 0)
        self._expire(oldest)

    def state(
        self,
        since: Since,
        routing: Mapping[str, Mapping] | None = None,
        alerts: Iterable[dict] = (),
        turns_since: int = 0,
        turn_filter: TurnFilter = TurnFilter(),
        turns_limit: int = 200,
    ) -> dict:
        """A poll's answer (see the module docstring). ``routing``: the
        tracker's snapshot (None: it did not answer; rows are not sent)."""
        reset = since.epoch != self.epoch or since.version > self._version
        after = 0 if reset else since.version
        if routing is not None:
            self._note_routing(routing)
        oldest = self._metrics.oldest_slot()
        self._expire(oldest)
        turns = self.recent.since(0 if reset else turns_since, turn_filter, turns_limit)
        return {
            "cursor": f"{self.epoch}.{self._version}",
            "turns_cursor": turns.last_seq,
            "reset": reset,
            "slot_s": self._metrics.slot_s,
            "window_s": self._metrics.window_s,
            "oldest_slot": oldest,
            "now_slot": self._metrics.current_slot(),
            "point_fields": POINT_FIELDS,
            "series": self._series_after(after),
            "routing_fields": ROUTING_FIELDS,
            "routing": {name: row for name, (version, row) in self._routing.items() if version > after},
            "routing_available": routing is not None,
            "preferred": preferred_endpoints(routing) if routing is not None else None,
            "alerts": list(alerts),
            "turn_fields": ROW_FIELDS,
            "turns": [row.as_list(seq) for seq, row in turns.rows],
            "turns_skipped": turns.skipped,
            "turns_missed": turns.missed,
        }

    def turn(self, seq: int) -> dict | None:
        """One recent turn with its attempts, if the ring still holds it."""
        row = self.recent.get(seq)
        return None if row is None else row.detail(seq)

    def sizes(self) -> dict[str, int]:
        """What this holds (tests: memory stays bounded)."""
        return {
            "slots": len(self._changed),
            "changed": sum(len(c) for c in self._changed.values()),
            "points": len(self._points),
            "group_stats": sum(len(g) for g in self._groups.values()),
            "routing": len(self._routing),
            "turns": len(self.recent),
        }

    # -- helpers ---------------------------------------------------------

    def _series_after(self, after: int) -> list[dict]:
        by_series: dict[SeriesId, list[list]] = {}
        for slot in sorted(self._changed):
            if self._slot_changed[slot] <= after:
                continue
            for series, version in self._changed[slot].items():
                if version > after:
                    by_series.setdefault(series, []).append(self._point(slot, series, version))
        return [{"group": group, "endpoint": endpoint, "points": points} for (group, endpoint), points in by_series.items()]

    def _point(self, slot: int, series: SeriesId, version: int) -> list:
        cached = self._points.get((slot, series))
        if cached is not None and cached[0] == version:
            return cached[1]
        group, endpoint = series
        group_stats = self._groups[slot][group]
        stats = group_stats if endpoint is GROUP else self._metrics.slot(slot).get(series) or TurnStats()
        failed = sum(n for (upstream, _, _), n in group_stats.failures.items() if endpoint is GROUP or upstream == endpoint)
        point = _point(slot, stats, failed)
        self._points[(slot, series)] = (version, point)
        return point

    def _note_routing(self, routing: Mapping[str, Mapping]) -> None:
        changed = False
        for name, entry in routing.items():
            row = [_rounded(entry.get(field)) for field in ROUTING_FIELDS]
            held = self._routing.get(name)
            if held is None or held[1] != row:
                if not changed:
                    self._version += 1
                    changed = True
                self._routing[name] = (self._version, row)

    def _expire(self, oldest: int) -> None:
        for slot in [s for s in self._changed if s < oldest]:
            for series in self._changed.pop(slot):
                self._points.pop((slot, series), None)
            self._groups.pop(slot, None)
            self._slot_changed.pop(slot, None)


def preferred_endpoints(routing: Mapping[str, Mapping]) -> dict[str, str]:
    """Per group, the endpoint its strategy ranks first now: the lowest
    score among endpoints whose breaker is not open (ties: by name). Groups
    whose strategy has no score (weighted shuffle) are left out."""
    best: dict[str, tuple[float, str]] = {}
    for name, entry in routing.items():
        score = entry.get("score")
        if score is None or entry.get("breaker") == "open":
            continue
        group = entry.get("group")
        if group not in best or (score, name) < best[group]:
            best[group] = (score, name)
    return {group: name for group, (_, name) in sorted(best.items())}


def _point(slot: int, stats: TurnStats, failed_attempts: int) -> list:
    return [
        slot, stats.turns, stats.errors,
        _seconds(stats.ttft.quantile(0.5)), _seconds(stats.ttft.quantile(0.99)),
        _seconds(stats.total.quantile(0.5)), _seconds(stats.total.quantile(0.99)),
        stats.fallbacks, stats.hedged, stats.cache_hits, _rounded(stats.cost_usd), failed_attempts,
    ]  # fmt: skip


def _seconds(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 4)


def _rounded(value):
    """Three significant digits for floats, so a score that only drifts does
    not count as a change on every poll."""
    if isinstance(value, float):
        return float(f"{value:.3g}") if math.isfinite(value) else None  # JSON has no inf or NaN
    return value
