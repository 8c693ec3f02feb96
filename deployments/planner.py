"""Where an ingress replica gets each turn's plan from the ``LatencyTracker``.

``per-turn`` (default, the design card's shape): one ``plan`` call to the
tracker per turn, which ranks the endpoints and counts the first one in
flight at once. ``snapshot`` (``deployments.planning: snapshot``): the
replica serves each turn from the tracker's latest plan for the same kind of
turn, and refreshes those plans on a timer of its own every
``snapshot_interval_s`` while turns of that kind keep coming
(``router.plan_snapshots``); the caller tells the tracker which endpoint
each turn went to, in its batched outcome reports. That takes the tracker's
round trip (about 2 ms here) off every turn, at the price of routing on
signal up to one interval old: turns within one interval go to the same
first endpoint, so least-busy spreads load only from one interval to the
next. A snapshot-planned turn is counted in flight by its caller
(``AttemptStarted``), on the same ordered channel as its outcome, so the
counts always balance.

A turn that names a conversation always asks the tracker (in either mode):
its turn is counted there and its endpoint affinity lives there, so a plan
shared by other turns cannot serve it. Such a plan is not kept as the last
plan for its kind of turn (it is ordered for one conversation).

Either way, if the tracker is unreachable the replica reuses the tracker's
last plan for that kind of turn (or plans from configuration alone), so no
turn fails because of it. Such a plan holds no lease (the local state never
counts anything in flight), so its caller reports every attempt it starts.
Once a call has found the tracker away (no answer within
``TRACKER_TIMEOUT_S``, or no such actor), the turns after it plan that way
at once, without waiting on it: the tracker of a lost node does not answer
until Ray notices the node is gone and restarts it elsewhere (about 20 s in
tests/test_e2e_multinode.py), and each turn would otherwise pay the whole
timeout. A background probe pings it every ``TRACKER_PROBE_INTERVAL_S``
and the next turn after an answer asks it again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from ray.exceptions import RayError, RayTaskError

from router.config import RouterConfig
from router.errors import RouterError
from router.plan_snapshots import SnapshotSchedule
from router.routing_state import AttemptPlan, ConversationRef, RoutingState
from deployments.tracker_shards import TrackerShards

__all__ = ["Planner", "TRACKER_PROBE_INTERVAL_S", "TRACKER_TIMEOUT_S"]

log = logging.getLogger(__name__)

TRACKER_TIMEOUT_S = 1.0
TRACKER_PROBE_INTERVAL_S = 0.25


class Planner:
    def __init__(self, config: RouterConfig, clock=time.monotonic, tracker_lookup=None):
        self._config = config
        self._clock = clock
        # The tracker shards (one by default); ``tracker_lookup`` (tests) finds a one-shard router's tracker.
        self.trackers = TrackerShards(config, (lambda name: tracker_lookup()) if tracker_lookup is not None else None)
        # Per shard, set while it is known to be away; the probe clears it.
        self._probes: list[asyncio.Task | None] = [None] * self.trackers.count
        # Plans from configuration alone, for when the tracker is unreachable:
        # tags and breakers still apply, live latency does not.
        self._local_state = RoutingState(config)
        # The tracker's last plan per kind of turn (when it came: the schedule's).
        self._last_plans: dict[tuple, AttemptPlan] = {}
        options = config.deployments
        self._snapshots = SnapshotSchedule(options.snapshot_interval_s) if options.planning == "snapshot" else None
        self._refresher: asyncio.Task | None = None

    @property
    def tracker_away(self) -> bool:
        """Whether turns of some shard's groups plan without it until the probe hears it."""
        return any(self._away(shard) for shard in range(self.trackers.count))

    def _away(self, shard: int) -> bool:
        probe = self._probes[shard]
        return probe is not None and not probe.done()

    async def plan(
        self,
        group: str,
        *,
        tags: tuple[str, ...],
        has_tools: bool,
        stream: bool,
        turn_id: str,
        choices: int = 1,
        conversation: ConversationRef | None = None,
    ) -> tuple[AttemptPlan, bool]:
        """The plan for one turn, and whether the tracker holds the lease of
        its first attempt under ``turn_id`` (False: the caller reports it).
        Without the tracker, a conversation's turn index is the client's or
        None (the count lives in the tracker)."""
        key = (group, tags, has_tools, choices, stream)
        snapshots = self._snapshots
        if snapshots is None or conversation is not None:
            return await self._ask(key, lease=turn_id, conversation=conversation)
        now_s = self._clock()
        if snapshots.warm(key, now_s):
            snapshots.used(key, now_s)
            return self._last_plans[key], False
        plan = await self._ask(key, lease=turn_id)
        snapshots.used(key, self._clock())
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.ensure_future(self._refresh_while_used())
        return plan

    async def _ask(self, key: tuple, *, lease: str | None, conversation: ConversationRef | None = None) -> tuple[AttemptPlan, bool]:
        """One call to the tracker, and whether it holds the plan's first
        lease; on failure the last plan or a local one, which holds none
        (the caller reports the turn's first attempt as started instead)."""
        group, tags, has_tools, choices, stream = key
        shard = self.trackers.map.of_group(group)
        if self._away(shard):
            return self._fallback(key, conversation)
        try:
            async with asyncio.timeout(TRACKER_TIMEOUT_S):
                plan = await self.trackers.handle(shard).plan.remote((group, tags, has_tools, choices, stream, lease, conversation))
            if conversation is not None:
                return plan, lease is not None
            self._last_plans[key] = plan
            if self._snapshots is not None:
                self._snapshots.fetched(key, self._clock())
            return plan, lease is not None
        except RayTaskError as exc:
            if isinstance(exc.cause, RouterError):
                raise exc.cause from None
            log.warning("tracker failed to plan; using the last known plan", exc_info=True)
        except (RayError, TimeoutError, ValueError):
            log.warning("tracker unavailable; planning without it until it answers again", exc_info=True)
            self.trackers.forget(shard)
            if not self._away(shard):
                self._probes[shard] = asyncio.ensure_future(self._probe_until_back(shard))
        return self._fallback(key, conversation)

    def _fallback(self, key: tuple, conversation: ConversationRef | None) -> tuple[AttemptPlan, bool]:
        """The tracker's last plan for this kind of turn, else one from
        configuration alone; it holds no lease."""
        group, tags, has_tools, choices, stream = key
        last = self._last_plans.get(key)
        if last is None:
            last = self._local_state.plan(group, required_tags=tags, has_tools=has_tools, choices=choices, stream=stream)
        if conversation is not None and conversation[2] is not None:
            last = dataclasses.replace(last, conversation_turn=conversation[2])
        return last, False

    async def _probe_until_back(self, shard: int) -> None:
        """Ping the shard's tracker (found again by name: Ray may have
        restarted it elsewhere) until it answers; ending clears its away."""
        while True:
            await asyncio.sleep(TRACKER_PROBE_INTERVAL_S)
            try:
                async with asyncio.timeout(TRACKER_TIMEOUT_S):
                    await self.trackers.handle(shard).ping.remote()
                log.warning("tracker answers again; planning with it")
                return
            except Exception:  # RayError, TimeoutError, ValueError (no such actor yet), anything else
                self.trackers.forget(shard)

    async def _refresh_while_used(self) -> None:
        """Every interval, a fresh plan for each kind of turn still in use;
        ends when none is (an idle replica makes no tracker calls)."""
        snapshots = self._snapshots
        while snapshots.active:
            await asyncio.sleep(snapshots.interval_s)
            due = snapshots.due(self._clock())
            if due:
                await asyncio.gather(*(self._refresh(key) for key in due))

    async def _refresh(self, key: tuple) -> None:
        try:
            await self._ask(key, lease=None)
        except RouterError:
            pass  # the next turn of this kind asks again, and gets the error itself
