"""The global routing state the ``LatencyTracker`` actor holds.

A plain object: the actor wraps it, tests drive it directly. One ``plan``
call per turn; finished attempts come back in batches through ``observe``.

Planning a turn:

1. Tags: only endpoints carrying every requested tag (and
   ``function-calling`` if the turn has tools) qualify; none is
   ``NoEligibleEndpoint`` (``router.tags``).
2. Health: endpoints whose breaker lets a turn through (closed, or
   half-open with its single probe free) are ranked by the group's strategy
   (``router.strategies``). The others (open, held by ``Retry-After``, or
   half-open with the probe out) follow, soonest back first: they are
   skipped while a healthy endpoint remains, but the group is never emptied,
   since trying a tripped endpoint beats failing the turn outright.
3. The first endpoint is counted in flight at once, with the time, so the
   next plan sees it without waiting for a report, and the age of its
   oldest pending turn is live signal (``EndpointLoad.lateness_s``).

Fallback attempts beyond the first endpoint are counted by ``started``.
Every outcome (ok, error, cancel alike) releases one turn in flight; counts
never go negative.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from router.config import ModelGroupConfig, RouterConfig
from router.endpoint_state import EndpointState
from router.errors import ModelNotFound, NoEligibleEndpoint
from router.hedge import hedge_delay_s
from router.outcome import AttemptOutcome, OutcomeKind
from router.strategies import Strategy, make_strategy
from router.tags import eligible

__all__ = ["AttemptPlan", "RoutingState", "check_eligible"]


def check_eligible(config: RouterConfig, group: str, required_tags: Iterable[str] = (), *, has_tools: bool = False) -> None:
    """Raise ``NoEligibleEndpoint`` unless some endpoint of the group or of
    its fallback chain carries the required tags (cheap: no state)."""
    chain = (group, *config.model_groups[group].fallbacks)
    errors = []
    for name in chain:
        try:
            if eligible(name, config.model_groups[name].endpoints, required_tags, has_tools=has_tools):
                return
        except NoEligibleEndpoint as error:
            errors.append(error)
    raise errors[0]


@dataclass(slots=True, frozen=True)
class AttemptPlan:
    """The endpoints to try for one turn, best first, and the attempt bound.

    ``hedge_after_s``: seconds to wait for the first endpoint's first token
    before hedging on the next (None: no hedge; ``router.hedge``).
    ``request_error_endpoints``: where a turn goes if an upstream rejects
    the request itself (the group's ``request_error_fallback``, ranked).
    """

    group: str
    endpoints: tuple[str, ...]
    max_attempts: int
    hedge_after_s: float | None = None
    request_error_endpoints: tuple[str, ...] = ()


class RoutingState:
    """Live routing signal for every endpoint of every group.

    Args:
        config: The validated router config; strategies and breakers are
            built from it once, here.
        clock: Monotonic time source in seconds (default ``time.monotonic``).
        rng: Random source for tie-breaking, exploration and shuffles
            (default a fresh ``random.Random()``).
    """

    def __init__(
        self,
        config: RouterConfig,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ):
        self._config = config
        self._clock = clock
        rng = rng if rng is not None else random.Random()
        self._strategies: dict[str, Strategy] = {
            name: make_strategy(group.strategy, rng, group.latency) for name, group in config.model_groups.items()
        }
        self._endpoints: dict[str, EndpointState] = {
            endpoint.name: EndpointState(endpoint, position, name, group, clock)
            for name, group in config.model_groups.items()
            for position, endpoint in enumerate(group.endpoints)
        }

    def plan(
        self,
        group: str,
        *,
        required_tags: Iterable[str] = (),
        has_tools: bool = False,
        stream: bool = True,
        reserve: bool = True,
    ) -> AttemptPlan:
        """Rank the endpoints for one turn and count the first in flight
        (``reserve=False``: rank only, for a plan an ingress will reuse and
        count turn by turn through ``started``).

        The group's own endpoints come first, then each fallback group's, in
        chain order; endpoints whose breaker is open follow every healthy one
        of the whole chain (an open breaker is a reason to move down the
        chain), soonest back first. Raises ``ModelNotFound`` for an unknown
        group and ``NoEligibleEndpoint`` when no endpoint of the group (nor of
        its fallbacks) carries the required tags.
        """
        group_config = self._group(group)
        required_tags = tuple(required_tags)  # read once per group of the chain
        now_s = self._clock()
        ready: list[str] = []
        tripped: list[EndpointState] = []
        first_error: NoEligibleEndpoint | None = None
        for name in (group, *group_config.fallbacks):
            try:
                candidates = eligible(name, self._config.model_groups[name].endpoints, required_tags, has_tools=has_tools)
            except NoEligibleEndpoint as error:
                first_error = first_error or error
                continue
            group_ready, group_tripped = self._rank_group(name, candidates, now_s, stream)
            ready.extend(group_ready)
            tripped.extend(group_tripped)
        if not ready and not tripped:
            raise first_error or NoEligibleEndpoint(f"model {group!r} has no endpoints", missing_tags=())
        tripped.sort(key=lambda s: s.breaker.open_until_s or 0.0)
        endpoints = tuple(ready) + tuple(s.name for s in tripped)
        # The first endpoint is the one the caller will try: count it in
        # flight now, so the next plan sees it without waiting for a report.
        first = self._endpoints[endpoints[0]]
        if reserve:
            first.start(now_s)
        hedge_after_s = None
        if stream and group_config.hedge is not None and len(endpoints) > 1:
            hedge_after_s = hedge_delay_s(group_config.hedge, first.recent_ttfts)
        return AttemptPlan(
            group,
            endpoints,
            min(group_config.max_attempts, len(endpoints)),
            hedge_after_s=hedge_after_s,
            request_error_endpoints=self._request_error_endpoints(group_config, required_tags, has_tools, now_s, stream),
        )

    def _request_error_endpoints(self, group_config: ModelGroupConfig, required_tags, has_tools: bool, now_s: float, stream: bool) -> tuple[str, ...]:
        """The declared group for request faults, ranked like any group (its
        tripped endpoints last); empty if none is declared or none qualifies."""
        target = group_config.request_error_fallback
        if target is None:
            return ()
        try:
            candidates = eligible(target, self._config.model_groups[target].endpoints, required_tags, has_tools=has_tools)
        except NoEligibleEndpoint:
            return ()
        ready, tripped = self._rank_group(target, candidates, now_s, stream)
        return tuple(ready) + tuple(s.name for s in tripped)

    def _rank_group(self, group: str, candidates, now_s: float, stream: bool) -> tuple[list[str], list[EndpointState]]:
        states = [self._endpoints[e.name] for e in candidates]
        for state in states:
            state.pending.expire(now_s)
        available = {s.name: s.breaker.available() for s in states}  # asked once: the clock moves
        ready = [s for s in states if available[s.name]]
        tripped = [s for s in states if not available[s.name]]
        ranked = self._strategies[group].rank([s.load(now_s, stream=stream) for s in ready])
        return [load.name for load in ranked], tripped

    def started(self, endpoints: Iterable[str]) -> None:
        """Fallback attempts beyond the plan's first endpoint, now in flight."""
        now_s = self._clock()
        for name in endpoints:
            state = self._endpoints.get(name)
            if state is not None:
                state.start(now_s)

    def observe(self, outcomes: Iterable[AttemptOutcome]) -> None:
        """Take finished attempts; each releases one turn in flight at its
        endpoint and feeds its latency estimates and breaker."""
        now_s = self._clock()
        for outcome in outcomes:
            state = self._endpoints.get(outcome.endpoint)
            if state is not None:  # else an endpoint removed by a config reload
                state.finish(outcome, now_s)

    def health_checked(self, endpoint: str, kind: OutcomeKind, retry_after_s: float | None = None) -> None:
        """An active health check's result (``health_check:`` in config).

        Feeds the breaker only: a check is not a turn, so it neither releases
        a turn in flight nor counts as a latency sample. A failed check counts
        towards opening; once the cooldown is over, a passing one closes the
        breaker like a successful probe.
        """
        state = self._endpoints.get(endpoint)
        if state is not None:
            state.breaker.observe(kind, retry_after_s)

    def snapshot(self) -> dict[str, dict]:
        """Per endpoint: group, strategy, score (the group strategy's, for a
        streaming turn; lower is better), in_flight, breaker state, TTFT and
        total-time estimates, recent TTFT p50/p99, counters. Seconds."""
        now_s = self._clock()
        result: dict[str, dict] = {}
        for name, state in self._endpoints.items():
            state.pending.expire(now_s)
            strategy = self._strategies[state.group]
            result[name] = {
                **state.summary(),
                "strategy": strategy.name,
                "score": strategy.score(state.load(now_s)),
                "oldest_pending_s": state.pending.oldest_age_s(now_s),
            }
        return result

    def _group(self, group: str) -> ModelGroupConfig:
        try:
            return self._config.model_groups[group]
        except KeyError:
            raise ModelNotFound(f"The model '{group}' does not exist or is not served by this router", param="model") from None
