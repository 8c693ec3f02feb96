"""How a model group ranks its endpoints for one turn.

Measuring is separate from choosing, as in tower: ``RoutingState`` keeps the
live signal per endpoint and hands each strategy a read-only ``EndpointLoad``
per candidate; the strategy returns them best first. The caller walks the
ranking (first try, then fallbacks) and owns retries. Every strategy takes
its random source as an argument, so tests are deterministic.

- ``latency-based`` (voice default): expected time to first token, inflated
  by the turns in flight; see ``LatencyBased``.
- ``least-busy``: fewest turns in flight, ties at random.
- ``weighted-shuffle``: a random order, biased by configured weight.
- ``ordered``: the configured order.

Health (circuit breakers) and tags are applied before ranking, by
``RoutingState``; strategies only see candidates that may take the turn.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from router.config import LatencyConfig, StrategyName

__all__ = [
    "EndpointLoad",
    "Strategy",
    "Ordered",
    "LeastBusy",
    "WeightedShuffle",
    "LatencyBased",
    "make_strategy",
]

UNKNOWN_BUSY_S = 1e6
"""Score of an endpoint with no latency data and a turn already in flight
(Finagle's ``Penalty``): it gets one turn at a time until it has data."""


@dataclass(frozen=True, slots=True)
class EndpointLoad:
    """What a strategy may know about one candidate endpoint, at one instant.

    Times in seconds. ``latency_s`` is the peak-EWMA of time to first token
    for a streaming turn (of total time for a non-streaming one), ``None``
    with no data yet. ``oldest_pending_s`` is the age of the oldest turn still
    in flight here (``None``: none); ``usual_pending_s`` is how long a turn
    here usually stays in flight, report lag included (peak-EWMA; ``None``:
    no data). ``sample_age_s``: seconds since the latest latency sample
    (``None``: never). ``position`` is the index in the configured order.
    """

    name: str
    position: int
    weight: float = 1.0
    in_flight: int = 0
    latency_s: float | None = None
    oldest_pending_s: float | None = None
    usual_pending_s: float | None = None
    sample_age_s: float | None = None

    @property
    def lateness_s(self) -> float:
        """How far the oldest pending turn is overdue compared with the usual
        time in flight: the endpoint is at least this much slower now."""
        if self.oldest_pending_s is None or self.usual_pending_s is None:
            return 0.0
        return max(0.0, self.oldest_pending_s - self.usual_pending_s)


class Strategy(Protocol):
    """Ranks candidates, best first. ``score``: lower is better, ``None``
    when the strategy has no per-endpoint score (shown by ``/v1/routing``)."""

    name: StrategyName

    def rank(self, candidates: Sequence[EndpointLoad]) -> list[EndpointLoad]: ...

    def score(self, load: EndpointLoad) -> float | None: ...


class Ordered:
    """The configured order, always: a fixed primary with fallbacks."""

    name: StrategyName = "ordered"

    def rank(self, candidates: Sequence[EndpointLoad]) -> list[EndpointLoad]:
        return sorted(candidates, key=lambda c: c.position)

    def score(self, load: EndpointLoad) -> float | None:
        return float(load.position)


class LeastBusy:
    """Fewest turns in flight first; ties broken at random, so equal
    endpoints share the traffic evenly."""

    name: StrategyName = "least-busy"

    def __init__(self, rng: random.Random):
        self._rng = rng

    def rank(self, candidates: Sequence[EndpointLoad]) -> list[EndpointLoad]:
        return _sorted_random_ties(candidates, self.score, self._rng)

    def score(self, load: EndpointLoad) -> float:
        return float(load.in_flight)


class WeightedShuffle:
    """A random order where an endpoint comes first with probability
    ``weight / sum(weights)`` (Efraimidis-Spirakis keys ``u ** (1 / weight)``).
    The baseline that ignores live signal."""

    name: StrategyName = "weighted-shuffle"

    def __init__(self, rng: random.Random):
        self._rng = rng

    def rank(self, candidates: Sequence[EndpointLoad]) -> list[EndpointLoad]:
        keyed = [(self._rng.random() ** (1.0 / c.weight), c) for c in candidates]
        return [c for _, c in sorted(keyed, key=lambda pair: pair[0], reverse=True)]

    def score(self, load: EndpointLoad) -> float | None:
        return None


class LatencyBased:
    """Lowest expected latency first: peak-EWMA (Finagle/tower) with load.

    score = (latency_s + lateness_s) x (1 + in_flight_penalty x in_flight)

    - ``latency_s`` jumps to a slow sample at once and decays towards faster
      ones (``router.peak_ewma``); failures count as slow samples.
    - ``lateness_s``: a turn still in flight for longer than turns here
      usually take proves the endpoint is now slower by at least that much,
      so a slowdown is seen before the first slow turn completes.
    - ``in_flight_penalty`` (default 0.1; 1.0 is tower's ``cost x (pending
      + 1)``) spreads load once an endpoint is busy.
    - No data and nothing in flight scores 0 (optimistic prior: try it);
      no data with a turn in flight scores ``UNKNOWN_BUSY_S`` (one at a time).
    - Exploration: with probability ``explore_share`` (default 0.05) a
      random other candidate *without recent data* (no sample for
      ``decay_s``, or none at all) is moved to the front. So no endpoint is
      starved of fresh signal, yet an endpoint just measured as slow is not
      sent more turns to learn what is already known: exploration costs at
      most about one turn per stale endpoint per ``decay_s``.
    - Ties are broken at random.
    """

    name: StrategyName = "latency-based"

    def __init__(self, rng: random.Random, config: LatencyConfig = LatencyConfig()):
        self._rng = rng
        self._explore_share = config.explore_share
        self._stale_after_s = config.decay_s
        self._in_flight_penalty = config.in_flight_penalty

    def score(self, load: EndpointLoad) -> float:
        if load.latency_s is None:
            return 0.0 if load.in_flight == 0 else UNKNOWN_BUSY_S + load.in_flight
        latency_s = load.latency_s + load.lateness_s
        return latency_s * (1.0 + self._in_flight_penalty * load.in_flight)

    def rank(self, candidates: Sequence[EndpointLoad]) -> list[EndpointLoad]:
        ranked = _sorted_random_ties(candidates, self.score, self._rng)
        if len(ranked) > 1 and self._rng.random() < self._explore_share:
            stale = [i for i, c in enumerate(ranked) if i > 0 and self._is_stale(c)]
            if stale:
                ranked.insert(0, ranked.pop(self._rng.choice(stale)))
        return ranked

    def _is_stale(self, load: EndpointLoad) -> bool:
        return load.sample_age_s is None or load.sample_age_s >= self._stale_after_s


def make_strategy(name: StrategyName, rng: random.Random, latency: LatencyConfig = LatencyConfig()) -> Strategy:
    """The runtime strategy for a group's configured ``strategy`` name."""
    if name == "latency-based":
        return LatencyBased(rng, latency)
    if name == "least-busy":
        return LeastBusy(rng)
    if name == "weighted-shuffle":
        return WeightedShuffle(rng)
    if name == "ordered":
        return Ordered()
    raise ValueError(f"unknown strategy {name!r}")


def _sorted_random_ties(
    candidates: Sequence[EndpointLoad], key: Callable[[EndpointLoad], float], rng: random.Random
) -> list[EndpointLoad]:
    # Shuffle, then a stable sort: equal keys end up in random order.
    shuffled = list(candidates)
    rng.shuffle(shuffled)
    return sorted(shuffled, key=key)
