"""The ``LatencyTracker``: one named, detached Ray actor that holds the global
routing state for every ingress and caller replica.

A thin shell over ``router.routing_state.RoutingState``. One ``plan`` call
per turn; outcomes arrive in batches (``report``), fire-and-forget. A
redeploy with a changed config reconfigures it in place (``reconfigure``:
``RoutingState.reconfigured`` carries the state that still applies).
"""

from __future__ import annotations

import ray

from router.config import RouterConfig
from router.outcome import LeaseEvent, OutcomeKind
from router.routing_state import AttemptPlan, ConversationRef, RoutingState
from deployments.named_actor import configured_actor, retire
from router.rollout import ActorNames
from router.shards import ShardMap, shard_config

__all__ = ["LatencyTracker", "PlanRequest", "get_or_create_tracker", "get_or_create_trackers", "tracker_handles"]

# One plain tuple, not five arguments: Ray serializes each argument of a call
# on its own, and a plain tuple of plain values is its cheapest case. Measured
# here from asyncio, per call p50: five keyword arguments 1.75 to 2.5 ms, one
# plain tuple 1.2 to 1.4 ms, a NamedTuple 3.2 ms or more (pickled).
PlanRequest = tuple[str, tuple[str, ...], bool, int, bool, str | None, ConversationRef | None]


class LatencyTracker:
    def __init__(self, config: RouterConfig):
        self._config = config
        self._state = RoutingState(config)

    def reconfigure(self, config: RouterConfig) -> bool:
        """Route by ``config`` from now on (a redeploy), carrying the state
        that still applies; False (nothing done) if the routing config is
        unchanged. Methods run one at a time: no plan sees half of it."""
        if _routing(config) == _routing(self._config):
            return False
        self._state = self._state.reconfigured(config)
        self._config = config
        return True

    def plan(self, request: PlanRequest) -> AttemptPlan:
        """``request``: ``(group, required_tags, has_tools, choices, stream,
        lease, conversation)`` (see ``RoutingState.plan``; ``lease`` is the
        turn's id, or None; ``conversation`` its ``(api_key_id,
        conversation_id, client_turn)``, or None)."""
        group, required_tags, has_tools, choices, stream, lease, *rest = request  # six items: no conversation
        conversation = rest[0] if rest else None
        return self._state.plan(
            group, required_tags=required_tags, has_tools=has_tools, choices=choices, stream=stream,
            lease=lease, conversation=conversation,
        )

    def report(self, events: list[LeaseEvent]) -> None:
        """A caller's or an ingress's batch, in the order things happened
        there (``RoutingState.report``)."""
        self._state.report(events)

    def health_checked(self, endpoint: str, kind: OutcomeKind, retry_after_s: float | None = None) -> None:
        self._state.health_checked(endpoint, kind, retry_after_s)

    def snapshot(self) -> dict:
        return self._state.snapshot()

    def ping(self) -> bool:
        return True


def get_or_create_tracker(config: RouterConfig) -> "ray.actor.ActorHandle":
    """The router's tracker (its first shard): see ``get_or_create_trackers``."""
    return get_or_create_trackers(config)[0]


def get_or_create_trackers(config: RouterConfig) -> list:
    """The router's tracker shards (``deployments.tracker_shards``), each
    created once, found by name afterwards and reconfigured with its slice
    of ``config`` (``deployments.named_actor.configured_actor``); shards
    beyond the configured count, left by an earlier deploy, are retired. A
    group that moves to another shard (a changed count, or fallbacks) starts
    afresh there: its endpoints' estimates, breakers and leases stay behind."""
    options, names = config.deployments, ActorNames.of(config)
    shards = ShardMap(config, options.tracker_shards)
    trackers = [
        configured_actor(LatencyTracker, names.tracker_shard(shard), options.tracker_namespace,
                         shard_config(config, shards, shard), resources=options.actor_resources)
        for shard in range(shards.count)
    ]
    extra = shards.count
    while retire(names.tracker_shard(extra), options.tracker_namespace):
        extra += 1
    return trackers


def tracker_handles(config: RouterConfig) -> list:
    """The router's tracker shards, found by name (they must exist)."""
    options, names = config.deployments, ActorNames.of(config)
    return [ray.get_actor(names.tracker_shard(shard), namespace=options.tracker_namespace)
            for shard in range(options.tracker_shards)]


def _routing(config: RouterConfig) -> tuple:
    """The part of the config the routing state is built from."""
    return config.model_groups, config.conversations
