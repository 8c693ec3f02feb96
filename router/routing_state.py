"""The global routing state the ``LatencyTracker`` actor holds.

A plain object: the actor wraps it, tests drive it directly. One ``plan``
call per turn; finished attempts come back in batches through ``observe``.

Planning a turn:

1. Tags: only endpoints carrying every requested tag (and
   ``function-calling`` if the turn has tools, and a provider that returns
   several choices if it asks for ``n > 1``) qualify; none is
   ``NoEligibleEndpoint`` (``router.tags``).
2. Health: endpoints whose breaker lets a turn through (closed, or
   half-open with its single probe free) are ranked by the group's strategy
   (``router.strategies``). The others (open, held by ``Retry-After``, or
   half-open with the probe out) follow, soonest back first: they are
   skipped while a healthy endpoint remains, but the group is never emptied,
   since trying a tripped endpoint beats failing the turn outright.
3. Given a turn id, the first endpoint is counted in flight at once under
   the lease ``(turn_id, 0)``, with the time, so the next plan sees it
   without waiting for a report, and the age of its oldest pending turn is
   live signal (``EndpointLoad.lateness_s``).

4. Given a conversation (``router.conversation``), the turn is counted in
   it (``AttemptPlan.conversation_turn``), and, if the group keeps
   affinity, the endpoint that served the conversation's last turn goes
   first unless it is unhealthy or slower than the best by more than the
   margin (``router.affinity``). The plan pins the conversation to its
   first endpoint; the turn's successful attempt pins it to the endpoint
   that served, when its outcome arrives.

Turns in flight are leases (``router.pending``), and this object owns them
all. The invariant: a lease is held at most once and released at most once.
It is taken by a plan (attempt 0) or by ``AttemptStarted`` (any other
attempt, or every attempt of a plan that reserved nothing); it is released
by the attempt's outcome or by ``TurnClosed`` from the ingress, whichever
comes first (outcome, error, cancel, a caller that died, a dispatch that
never reached a caller); a closed turn takes no new lease. Whatever the
order events arrive in, once every turn has ended and been reported, every
count is back where it started; a lease whose release is lost expires after
its group's deadline plus slack.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from router.affinity import AffinityChoice, PinKey, Pins, prefer_pinned
from router.config import ModelGroupConfig, RouterConfig
from router.conversation import TurnCounter
from router.endpoint_state import PENDING_SLACK_S, EndpointState
from router.errors import ModelNotFound, NoEligibleEndpoint
from router.hedge import hedge_delay_s
from router.rollout import carried_endpoints
from router.outcome import AttemptOutcome, AttemptStarted, LeaseEvent, LeaseKey, OutcomeKind, TurnClosed
from router.strategies import EndpointLoad, Strategy, make_strategy
from router.tags import eligible
from router.ttl_table import TtlTable

__all__ = ["AttemptPlan", "ConversationRef", "RoutingState", "check_eligible"]

ConversationRef = tuple[str | None, str, int | None]
"""``(api_key_id, conversation_id, client_turn)``: the conversation a turn
names (``router.conversation``), as a plain tuple for the tracker call."""


def check_eligible(
    config: RouterConfig, group: str, required_tags: Iterable[str] = (), *, has_tools: bool = False, choices: int = 1
) -> None:
    """Raise ``NoEligibleEndpoint`` unless some endpoint of the group or of
    its fallback chain carries the required tags and can return ``choices``
    choices (cheap: no state)."""
    chain = (group, *config.model_groups[group].fallbacks)
    errors = []
    for name in chain:
        try:
            if eligible(name, config.model_groups[name].endpoints, required_tags, has_tools=has_tools, choices=choices):
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
    conversation_turn: int | None = None  # the turn's index in its conversation
    affinity: str | None = None  # what affinity did (``AffinityChoice.note``); None: not applied


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
        self._rng = rng
        self._strategies: dict[str, Strategy] = {
            name: make_strategy(group.strategy, rng, group.latency) for name, group in config.model_groups.items()
        }
        self._endpoints: dict[str, EndpointState] = {
            endpoint.name: EndpointState(endpoint, position, name, group, clock)
            for name, group in config.model_groups.items()
            for position, endpoint in enumerate(group.endpoints)
        }
        self._holders: dict[LeaseKey, EndpointState] = {}  # every lease held, and where
        self._closed: dict[str, float] = {}  # turn ids closed by the ingress -> when (oldest first)
        self._closed_keep_s = max((g.timeouts.total_s for g in config.model_groups.values()), default=0.0) + PENDING_SLACK_S
        # No turn has more attempts than this (a request fault may add one).
        self._attempt_bound = max((g.max_attempts for g in config.model_groups.values()), default=0) + 1
        conversations = config.conversations
        self._turns = TurnCounter(max_conversations=conversations.max_tracked, idle_ttl_s=conversations.idle_ttl_s, clock=clock)
        self._pins: dict[str, Pins] = {
            name: Pins(group.affinity, clock) for name, group in config.model_groups.items() if group.affinity.enabled
        }
        # Turns planned with a pin key, until their outcome pins (or they expire).
        self._pinning: TtlTable[tuple[str, PinKey]] = TtlTable(
            ttl_s=self._closed_keep_s or PENDING_SLACK_S, max_entries=conversations.max_tracked
        )

    def reconfigured(self, config: RouterConfig) -> "RoutingState":
        """This state under ``config`` (a redeploy, ``router.rollout``): a
        new state whose endpoints at an unchanged upstream go on from these
        (turns in flight, estimates, breakers, counters), with conversations'
        turn counts, pins to endpoints that still exist, and the turns
        closed lately. Leases on an endpoint that is gone (or moved) are
        dropped, so every count still returns to zero. This object must not
        be used afterwards."""
        new = RoutingState(config, self._clock, self._rng)
        kept = carried_endpoints(self._config, config)
        for name in kept:
            new._endpoints[name].adopt(self._endpoints[name])
        new._holders = {key: new._endpoints[state.name] for key, state in self._holders.items() if state.name in kept}
        new._closed = dict(self._closed)
        conversations = config.conversations
        new._turns = self._turns.carried(max_conversations=conversations.max_tracked, idle_ttl_s=conversations.idle_ttl_s)
        for group, pins in self._pins.items():
            if group in new._pins:
                new._pins[group] = pins.carried(config.model_groups[group].affinity, kept)
        new._pinning = self._pinning.carried(
            ttl_s=new._closed_keep_s or PENDING_SLACK_S, max_entries=conversations.max_tracked, now_s=self._clock(),
            keep=lambda _, pinning: pinning[0] in new._pins,
        )
        return new

    def plan(
        self,
        group: str,
        *,
        required_tags: Iterable[str] = (),
        has_tools: bool = False,
        choices: int = 1,
        stream: bool = True,
        lease: str | None = None,
        conversation: ConversationRef | None = None,
    ) -> AttemptPlan:
        """Rank the endpoints for one turn and, given the turn's id as
        ``lease``, count the first in flight under ``(lease, 0)`` (None: rank
        only, for a plan an ingress reuses or makes without the tracker; its
        caller then reports ``AttemptStarted`` for attempt 0 too).

        The group's own endpoints come first, then each fallback group's, in
        chain order; endpoints whose breaker is open follow every healthy one
        of the whole chain (an open breaker is a reason to move down the
        chain), soonest back first. Raises ``ModelNotFound`` for an unknown
        group and ``NoEligibleEndpoint`` when no endpoint of the group (nor of
        its fallbacks) carries the required tags. A turn asking for several
        ``choices`` is planned on endpoints whose provider returns them only
        (a group mixing providers skips the others).

        ``conversation``: the turn's ``(api_key_id, conversation_id,
        client_turn)``, or None; it is counted, and affinity may put its
        pinned endpoint first (``router.affinity``).
        """
        group_config = self._group(group)
        required_tags = tuple(required_tags)  # read once per group of the chain
        now_s = self._clock()
        ready: list[str] = []
        tripped: list[EndpointState] = []
        first_error: NoEligibleEndpoint | None = None
        choice: AffinityChoice | None = None
        pins = self._pins.get(group) if conversation is not None else None
        for name in (group, *group_config.fallbacks):
            try:
                candidates = eligible(name, self._config.model_groups[name].endpoints, required_tags,
                                      has_tools=has_tools, choices=choices)
            except NoEligibleEndpoint as error:
                first_error = first_error or error
                continue
            # A turn of a conversation goes cold to any endpoint but its pin,
            # so it is ranked by cold TTFTs (``EndpointState.load``).
            group_ready, group_tripped = self._rank_group(name, candidates, now_s, stream, cold=pins is not None)
            if pins is not None and name == group:
                group_ready, choice = self._prefer_pinned(pins, conversation, group_ready, candidates)
            ready.extend(load.name for load in group_ready)
            tripped.extend(group_tripped)
        if not ready and not tripped:
            raise first_error or NoEligibleEndpoint(f"model {group!r} has no endpoints", missing_tags=())
        tripped.sort(key=lambda s: s.breaker.open_until_s or 0.0)
        endpoints = tuple(ready) + tuple(s.name for s in tripped)
        # The first endpoint is the one the caller will try: count it in
        # flight now, so the next plan sees it without waiting for a report.
        first = self._endpoints[endpoints[0]]
        if lease is not None:
            self._hold(first, (lease, 0), now_s)
            if pins is not None:
                pins.pin(conversation[:2], first.name)
                self._pinning.put(lease, (group, conversation[:2]), now_s)
        hedge_after_s = None
        if stream and group_config.hedge is not None and len(endpoints) > 1:
            hedge_after_s = hedge_delay_s(group_config.hedge, first.recent_ttfts)
        return AttemptPlan(
            group,
            endpoints,
            min(group_config.max_attempts, len(endpoints)),
            hedge_after_s=hedge_after_s,
            request_error_endpoints=self._request_error_endpoints(group_config, required_tags, has_tools, choices, now_s, stream),
            conversation_turn=self._turns.next_turn(conversation[:2], conversation[2]) if conversation is not None else None,
            affinity=choice.note if choice is not None else None,
        )

    def _prefer_pinned(self, pins: Pins, conversation: ConversationRef, ranked, candidates) -> tuple[list, AffinityChoice]:
        pinned = pins.get(conversation[:2])
        state = self._endpoints.get(pinned) if pinned is not None else None
        margin_s = pins.margin_s(state.warm_gain_s() if state is not None else None)
        return prefer_pinned(ranked, pinned, eligible={c.name for c in candidates}, margin_s=margin_s)

    def _request_error_endpoints(
        self, group_config: ModelGroupConfig, required_tags, has_tools: bool, choices: int, now_s: float, stream: bool
    ) -> tuple[str, ...]:
        """The declared group for request faults, ranked like any group (its
        tripped endpoints last); empty if none is declared or none qualifies."""
        target = group_config.request_error_fallback
        if target is None:
            return ()
        try:
            candidates = eligible(target, self._config.model_groups[target].endpoints, required_tags,
                                  has_tools=has_tools, choices=choices)
        except NoEligibleEndpoint:
            return ()
        ready, tripped = self._rank_group(target, candidates, now_s, stream)
        return tuple(load.name for load in ready) + tuple(s.name for s in tripped)

    def _rank_group(
        self, group: str, candidates, now_s: float, stream: bool, *, cold: bool = False
    ) -> tuple[list[EndpointLoad], list[EndpointState]]:
        states = [self._endpoints[e.name] for e in candidates]
        for state in states:
            self._expire(state, now_s)
        available = {s.name: s.breaker.available() for s in states}  # asked once: the clock moves
        ready = [s for s in states if available[s.name]]
        tripped = [s for s in states if not available[s.name]]
        ranked = self._strategies[group].rank([s.load(now_s, stream=stream, cold=cold) for s in ready])
        return ranked, tripped

    def report(self, events: Iterable[LeaseEvent]) -> None:
        """A batch from one channel (a caller's, or an ingress's), in the
        order things happened there."""
        now_s = self._clock()
        for event in events:
            if isinstance(event, AttemptOutcome):
                self._finish(event, now_s)
            elif isinstance(event, AttemptStarted):
                state = self._endpoints.get(event.endpoint)
                if state is not None:
                    self._hold(state, event.lease, now_s)
            else:
                self._close(event, now_s)

    def observe(self, outcomes: Iterable[AttemptOutcome]) -> None:
        """Take finished attempts; each releases its lease (if it holds one)
        and feeds its endpoint's latency estimates and breaker."""
        self.report(outcomes)

    def _finish(self, outcome: AttemptOutcome, now_s: float) -> None:
        in_flight_s = self._release(outcome.lease, now_s) if outcome.lease is not None else None
        if outcome.kind is OutcomeKind.OK and outcome.lease is not None:
            self._pin(outcome.lease[0], outcome.endpoint)
        state = self._endpoints.get(outcome.endpoint)
        if state is not None:  # else an endpoint removed by a config reload
            state.finish(outcome, now_s, in_flight_s)

    def _pin(self, turn_id: str, endpoint: str) -> None:
        """The turn served well here: its conversation's cache is warm here now."""
        pinning = self._pinning.pop(turn_id)
        if pinning is not None and endpoint in self._endpoints:
            group, key = pinning
            self._pins[group].pin(key, endpoint)

    def _hold(self, state: EndpointState, key: LeaseKey, now_s: float) -> None:
        if key[0] in self._closed or key in self._holders:
            return  # a closed turn takes no new lease; a held one is not held twice
        if state.hold(key, now_s):
            self._holders[key] = state

    def _release(self, key: LeaseKey, now_s: float) -> float | None:
        holder = self._holders.pop(key, None)
        return holder.pending.release(key, now_s) if holder is not None else None

    def _close(self, closed: TurnClosed, now_s: float) -> None:
        turn_id = closed.turn_id
        for index in range(self._attempt_bound):
            self._release((turn_id, index), now_s)
        self._closed[turn_id] = now_s
        # Tombstones are needed only while a late start could still arrive.
        while self._closed:
            oldest, closed_s = next(iter(self._closed.items()))
            if now_s - closed_s <= self._closed_keep_s:
                break
            del self._closed[oldest]

    def _expire(self, state: EndpointState, now_s: float) -> None:
        for key in state.pending.expire(now_s):
            self._holders.pop(key, None)

    def in_flight(self) -> int:
        """Leases held across every endpoint."""
        return len(self._holders)

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
        total-time estimates, recent TTFT p50/p99, counters, the warm-cache
        gain and the conversations pinned to it. Seconds."""
        now_s = self._clock()
        pinned: dict[str, int] = {}
        for pins in self._pins.values():  # a group's pins may point into a fallback group
            for endpoint, count in pins.per_endpoint().items():
                pinned[endpoint] = pinned.get(endpoint, 0) + count
        result: dict[str, dict] = {}
        for name, state in self._endpoints.items():
            self._expire(state, now_s)
            strategy = self._strategies[state.group]
            result[name] = {
                **state.summary(),
                "strategy": strategy.name,
                "score": strategy.score(state.load(now_s)),
                "oldest_pending_s": state.pending.oldest_age_s(now_s),
                "pinned_conversations": pinned.get(name, 0),
            }
        return result

    def _group(self, group: str) -> ModelGroupConfig:
        try:
            return self._config.model_groups[group]
        except KeyError:
            raise ModelNotFound(f"The model '{group}' does not exist or is not served by this router", param="model") from None
