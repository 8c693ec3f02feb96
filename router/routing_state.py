"""The global routing state the ``LatencyTracker`` actor holds.

A plain object: the actor wraps it, tests drive it directly. In this
increment a plan is the group's endpoints in configured order (the
``ordered`` strategy); live-signal strategies plug in behind ``plan``.
The state already counts turns in flight and keeps per-endpoint outcome
counters, fed by ``observe``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from router.config import RouterConfig
from router.errors import ModelNotFound
from router.outcome import AttemptOutcome, OutcomeKind

__all__ = ["AttemptPlan", "EndpointStats", "RoutingState"]


@dataclass(slots=True, frozen=True)
class AttemptPlan:
    """The endpoints to try for one turn, best first, and the attempt bound."""

    group: str
    endpoints: tuple[str, ...]
    max_attempts: int


@dataclass(slots=True)
class EndpointStats:
    in_flight: int = 0
    turns: int = 0
    failures: int = 0
    last_ttft_s: float | None = None
    last_outcome: str | None = None
    last_seen_s: float | None = None
    outcomes: dict[str, int] = field(default_factory=dict)


class RoutingState:
    def __init__(self, config: RouterConfig, clock: Callable[[], float] = time.monotonic):
        self._config = config
        self._clock = clock
        self._stats: dict[str, EndpointStats] = {
            e.name: EndpointStats() for g in config.model_groups.values() for e in g.endpoints
        }

    def plan(self, group: str) -> AttemptPlan:
        try:
            group_config = self._config.model_groups[group]
        except KeyError:
            raise ModelNotFound(f"The model '{group}' does not exist or is not served by this router", param="model") from None
        endpoints = tuple(e.name for e in group_config.endpoints)
        # The first endpoint is the one the caller will try: count it in
        # flight now, so the next plan sees it without waiting for a report.
        self._stats[endpoints[0]].in_flight += 1
        return AttemptPlan(group, endpoints, min(group_config.max_attempts, len(endpoints)))

    def started(self, endpoints: Iterable[str]) -> None:
        """Fallback attempts beyond the plan's first endpoint, now in flight."""
        for endpoint in endpoints:
            if endpoint in self._stats:
                self._stats[endpoint].in_flight += 1

    def observe(self, outcomes: Iterable[AttemptOutcome]) -> None:
        """Take finished attempts; each releases the in-flight slot it held."""
        now = self._clock()
        for outcome in outcomes:
            stats = self._stats.get(outcome.endpoint)
            if stats is None:
                continue  # an endpoint removed by a config reload
            stats.in_flight = max(0, stats.in_flight - 1)
            stats.turns += 1
            stats.last_seen_s = now
            stats.last_outcome = outcome.kind.value
            stats.outcomes[outcome.kind.value] = stats.outcomes.get(outcome.kind.value, 0) + 1
            if outcome.kind.counts_against_health:
                stats.failures += 1
            if outcome.kind is OutcomeKind.OK and outcome.ttft_s is not None:
                stats.last_ttft_s = outcome.ttft_s

    def snapshot(self) -> dict[str, dict]:
        return {
            name: {
                "in_flight": s.in_flight,
                "turns": s.turns,
                "failures": s.failures,
                "last_ttft_s": s.last_ttft_s,
                "last_outcome": s.last_outcome,
                "outcomes": dict(s.outcomes),
            }
            for name, s in self._stats.items()
        }
