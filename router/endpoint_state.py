"""The live signal the tracker keeps for one endpoint.

Turns in flight (``PendingTurns``), peak-EWMA estimates of time to first
token (of every turn, and of cold turns alone), of total time and of time
in flight, the circuit breaker, a bounded ring of recent TTFTs for p50/p99,
and outcome counters. ``RoutingState``
owns one per configured endpoint and reads it as an ``EndpointLoad``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from router.breaker import CircuitBreaker
from router.config import EndpointConfig, ModelGroupConfig
from router.outcome import AttemptOutcome, OutcomeKind
from router.peak_ewma import PeakEwma
from router.pending import PendingTurns
from router.strategies import EndpointLoad

__all__ = ["EndpointState", "RECENT_TTFTS", "PENDING_SLACK_S"]

RECENT_TTFTS = 256
"""How many recent TTFTs the p50/p99 shown by ``/v1/routing`` are taken over."""

WARM_SAMPLES = 3
"""Samples of each kind (warm and cold) before ``warm_gain_s`` is trusted."""

PENDING_SLACK_S = 5.0
"""Seconds past a group's ``total_s`` after which an unreported turn is
forgotten (outcomes normally arrive within ``report_interval_s``)."""


@dataclass(slots=True)
class _Mean:
    """An exponentially weighted mean (weight 0.2 on the newest sample)
    and how many samples it has seen."""

    value: float = 0.0
    samples: int = 0

    def observe(self, sample: float) -> None:
        self.samples += 1
        self.value = sample if self.samples == 1 else self.value + 0.2 * (sample - self.value)


@dataclass(slots=True)
class _Counters:
    turns: int = 0
    failures: int = 0
    last_ttft_s: float | None = None
    last_outcome: str | None = None
    last_seen_s: float | None = None


class EndpointState:
    """One endpoint's live signal. Times in seconds from ``clock``.

    A failed attempt (an outcome that ``counts_against_health``) is a latency
    sample of ``max(duration_s, failure_penalty_s)`` for both estimates; a
    cancelled or rejected one is no latency sample, but still releases its
    turn in flight.
    """

    def __init__(
        self,
        endpoint: EndpointConfig,
        position: int,
        group: str,
        group_config: ModelGroupConfig,
        clock: Callable[[], float],
    ):
        self.name = endpoint.name
        self.group = group
        self.position = position
        self.weight = endpoint.weight
        decay_s = group_config.latency.decay_s
        max_age_s = group_config.timeouts.total_s + PENDING_SLACK_S
        self.failure_penalty_s = group_config.latency.failure_penalty_s or group_config.timeouts.first_token_s
        self.pending = PendingTurns(max_age_s)
        self.ttft = PeakEwma(decay_s, clock)
        # TTFTs of turns whose prompt the provider did not find in its cache:
        # what a conversation moving here would wait (``load(cold=True)``).
        self.cold_ttft = PeakEwma(decay_s, clock)
        self.total = PeakEwma(decay_s, clock)
        self.time_in_flight = PeakEwma(decay_s, clock)
        self.breaker = CircuitBreaker(group_config.breaker, clock, probe_timeout_s=max_age_s)
        self.recent_ttfts: deque[float] = deque(maxlen=RECENT_TTFTS)
        self.outcomes: dict[str, int] = {}
        self._counters = _Counters()
        # Steady means of warm TTFTs (the provider found the prompt in its
        # cache) and cold ones, for ``warm_gain_s``; routing reads the
        # peak-EWMA ``cold_ttft``, which follows a slowdown at once.
        self._warm_mean = _Mean()
        self._cold_mean = _Mean()

    def adopt(self, old: "EndpointState") -> None:
        """Go on from ``old``'s signal (this endpoint before a redeploy, at
        the same upstream: ``router.rollout``), under this state's config:
        its turns in flight, latency estimates, breaker, recent TTFTs and
        counters. ``old`` must not be used afterwards (they are shared)."""
        max_age_s = self.pending.max_age_s
        decay_s = self.ttft.decay_s
        self.pending = old.pending
        self.pending.retune(max_age_s)
        for name in ("ttft", "cold_ttft", "total", "time_in_flight"):
            estimate = getattr(old, name)
            estimate.retune(decay_s)
            setattr(self, name, estimate)
        old.breaker.retune(self.breaker.config, self.breaker.probe_timeout_s)
        self.breaker = old.breaker
        self.recent_ttfts = old.recent_ttfts
        self.outcomes = old.outcomes
        self._counters = old._counters
        self._warm_mean = old._warm_mean
        self._cold_mean = old._cold_mean

    # -- events ---------------------------------------------------------

    def hold(self, key, now_s: float) -> bool:
        """An attempt was sent here under lease ``key``; False if it already held one."""
        if not self.pending.add(key, now_s):
            return False
        self.breaker.started()
        return True

    def finish(self, outcome: AttemptOutcome, now_s: float, in_flight_s: float | None) -> None:
        """An attempt here ended, whatever the outcome; ``in_flight_s``: how
        long its lease was held, if this outcome released it."""
        kind = outcome.kind
        if kind is OutcomeKind.OK:
            if in_flight_s is not None:
                self.time_in_flight.observe(in_flight_s)
            self.total.observe(outcome.duration_s)
        if outcome.ttft_s is not None:
            self.ttft.observe(outcome.ttft_s)
            self.recent_ttfts.append(outcome.ttft_s)
            if kind is OutcomeKind.OK and outcome.cached_tokens is not None:
                if outcome.cached_tokens > 0:
                    self._warm_mean.observe(outcome.ttft_s)
                else:
                    self._cold_mean.observe(outcome.ttft_s)
                    self.cold_ttft.observe(outcome.ttft_s)
        if kind.counts_against_health:
            penalty_s = max(outcome.duration_s, self.failure_penalty_s)
            self.ttft.observe(penalty_s)
            self.total.observe(penalty_s)
        self.breaker.observe(kind, outcome.retry_after_s)
        self._count(outcome, now_s)

    def _count(self, outcome: AttemptOutcome, now_s: float) -> None:
        counters = self._counters
        counters.turns += 1
        counters.last_seen_s = now_s
        counters.last_outcome = outcome.kind.value
        self.outcomes[outcome.kind.value] = self.outcomes.get(outcome.kind.value, 0) + 1
        if outcome.kind.counts_against_health:
            counters.failures += 1
        if outcome.ttft_s is not None:
            counters.last_ttft_s = outcome.ttft_s

    # -- reading --------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self.pending)

    def load(self, now_s: float, *, stream: bool = True, cold: bool = False) -> EndpointLoad:
        """The read-only view a strategy ranks by, for a streaming turn
        (TTFT) or a non-streaming one (total time; TTFT until it has data).

        ``cold``: for a streaming turn whose prompt this endpoint has not
        cached (a conversation's first turn here): the cold-TTFT estimate
        when it is the higher one. The all-turns estimate mixes in the warm
        turns of conversations pinned here, which a newcomer does not get;
        yet it is the first to show a slowdown, since warm turns are most of
        the samples, so the higher of the two stands.
        """
        primary, other = (self.ttft, self.total) if stream else (self.total, self.ttft)
        latency_s = primary.value()
        if cold and stream:
            cold_s = self.cold_ttft.value()
            if cold_s is not None and (latency_s is None or cold_s > latency_s):
                latency_s = cold_s
        ages = [a for a in (self.ttft.age_s(), self.total.age_s()) if a is not None]
        return EndpointLoad(
            name=self.name,
            position=self.position,
            weight=self.weight,
            in_flight=self.in_flight,
            latency_s=latency_s if latency_s is not None else other.value(),
            oldest_pending_s=self.pending.oldest_age_s(now_s),
            usual_pending_s=self.time_in_flight.value(),
            sample_age_s=min(ages) if ages else None,
        )

    def warm_gain_s(self) -> float | None:
        """How much sooner a turn whose prompt is cached here starts than one
        that is not (mean cold minus mean warm TTFT, at least 0), once both
        kinds have ``WARM_SAMPLES`` samples; else None."""
        warm, cold = self._warm_mean, self._cold_mean
        if warm.samples < WARM_SAMPLES or cold.samples < WARM_SAMPLES:
            return None
        return max(0.0, cold.value - warm.value)

    def summary(self) -> dict:
        counters = self._counters
        ordered = sorted(self.recent_ttfts)
        return {
            "group": self.group,
            "in_flight": self.in_flight,
            "breaker": self.breaker.state().value,
            "ttft_s": self.ttft.value(),
            "cold_ttft_s": self.cold_ttft.value(),
            "total_s": self.total.value(),
            "ttft_p50_s": _nearest_rank(ordered, 0.50),
            "ttft_p99_s": _nearest_rank(ordered, 0.99),
            "warm_gain_s": self.warm_gain_s(),
            "turns": counters.turns,
            "failures": counters.failures,
            "last_ttft_s": counters.last_ttft_s,
            "last_outcome": counters.last_outcome,
            "outcomes": dict(self.outcomes),
        }


def _nearest_rank(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
