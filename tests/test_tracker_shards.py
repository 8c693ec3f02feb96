"""Tracker shards as the replicas use them (``deployments.tracker_shards``,
``deployments.planner``), over stand-in trackers: each turn planned by its
group's shard, a batch's events split by shard (a closed turn to every
shard), health checks to their endpoint's shard, snapshots merged; a shard
that is away leaves the others' turns asking theirs. No Ray."""

from __future__ import annotations

import asyncio

import pytest

from deployments.planner import Planner
from deployments.tracker_shards import TrackerShards
from router.config import parse_config
from router.errors import ConfigError
from router.outcome import AttemptOutcome, AttemptStarted, OutcomeKind, TurnClosed
from router.routing_state import RoutingState
from router.shards import ShardMap, shard_config


def config(shards: int):
    def group(name, size, **extra):
        return {"endpoints": [{"name": f"{name}-{i}", "base_url": "http://127.0.0.1:9/v1", "model": "m"} for i in range(size)], **extra}

    return parse_config({
        "model_groups": {"a": group("a", 2, fallbacks=["b"]), "b": group("b", 1), "c": group("c", 3)},
        "deployments": {"tracker_shards": shards, "tracker_name": "tr"},
    })  # fmt: skip


class Method:
    def __init__(self, run, calls, name):
        self._run, self._calls, self._name = run, calls, name

    def remote(self, *args):
        self._calls.append((self._name, args))
        future = asyncio.get_running_loop().create_future() if self._name in ("plan", "snapshot", "ping") else None
        result = self._run(*args)
        if future is None:
            return None
        future.set_result(result)
        return future


class FakeShard:
    """A shard's tracker: its slice of the config in a real RoutingState."""

    def __init__(self, cfg):
        self.state = RoutingState(cfg)
        self.calls: list = []
        self.plan = Method(lambda request: self.state.plan(request[0], lease=request[5]), self.calls, "plan")
        self.report = Method(self.state.report, self.calls, "report")
        self.health_checked = Method(self.state.health_checked, self.calls, "health_checked")
        self.snapshot = Method(self.state.snapshot, self.calls, "snapshot")
        self.ping = Method(lambda: True, self.calls, "ping")


def fake_cluster(shards: int):
    cfg = config(shards)
    shard_map = ShardMap(cfg, shards)
    names = ["tr"] + [f"tr-shard-{i}" for i in range(1, shards)]
    trackers = {name: FakeShard(shard_config(cfg, shard_map, i)) for i, name in enumerate(names)}
    return cfg, trackers


def test_the_shards_are_named_after_the_tracker_and_split_by_fallback_units():
    cfg, trackers = fake_cluster(2)
    shards = TrackerShards(cfg, trackers.__getitem__)
    assert shards.names == ["tr", "tr-shard-1"]
    assert [shards.map.of_group(g) for g in "abc"] == [0, 0, 1] or [shards.map.of_group(g) for g in "abc"] == [1, 1, 0]
    assert set(trackers["tr"].state.snapshot()) | set(trackers["tr-shard-1"].state.snapshot()) == {"a-0", "a-1", "b-0", "c-0", "c-1", "c-2"}
    assert not set(trackers["tr"].state.snapshot()) & set(trackers["tr-shard-1"].state.snapshot())


def test_a_batch_is_split_by_endpoint_and_a_closed_turn_goes_to_every_shard():
    cfg, trackers = fake_cluster(2)
    shards = TrackerShards(cfg, trackers.__getitem__)
    c_shard = trackers[shards.names[shards.map.of_group("c")]]
    a_shard = trackers[shards.names[shards.map.of_group("a")]]

    async def scenario():
        await c_shard.plan.remote(("c", (), False, 1, True, "t1"))
        shards.report([
            AttemptStarted("a-0", ("t2", 0)),
            AttemptOutcome("c-0", OutcomeKind.OK, 0.2, ttft_s=0.05, lease=("t1", 0)),
            TurnClosed("t2"),
        ])
        shards.health_checked("b-0", OutcomeKind.UPSTREAM_ERROR)
        return await shards.snapshot()

    merged = asyncio.run(scenario())
    reports = {name: [args[0] for method, args in t.calls if method == "report"] for name, t in trackers.items()}
    assert [[type(e).__name__ for e in batch] for batch in reports[shards.names[shards.map.of_group("c")]]] == [["AttemptOutcome", "TurnClosed"]]
    assert [[type(e).__name__ for e in batch] for batch in reports[shards.names[shards.map.of_group("a")]]] == [["AttemptStarted", "TurnClosed"]]
    assert [args[0] for method, args in a_shard.calls if method == "health_checked"] == ["b-0"]
    assert set(merged) == {"a-0", "a-1", "b-0", "c-0", "c-1", "c-2"}
    assert merged["c-0"]["in_flight"] == 0 and merged["a-0"]["in_flight"] == 0  # leases released where they were held


def test_each_turn_is_planned_by_its_groups_shard_and_an_away_shard_is_its_own():
    cfg, trackers = fake_cluster(2)
    shards = TrackerShards(cfg, trackers.__getitem__)
    c_name = shards.names[shards.map.of_group("c")]
    a_name = shards.names[shards.map.of_group("a")]
    gone = {c_name}

    def lookup(name):
        if name in gone:
            raise ValueError(f"Failed to look up actor {name}")
        return trackers[name]

    async def scenario():
        planner = Planner(cfg)
        planner.trackers = TrackerShards(cfg, lookup)
        plans = {}
        for group in "abc":
            plans[group] = await planner.plan(group, tags=(), has_tools=False, stream=True, turn_id=f"t-{group}")
        away = (planner.tracker_away, planner._away(shards.map.of_group("c")), planner._away(shards.map.of_group("a")))
        return plans, away

    plans, away = asyncio.run(scenario())
    assert [m for m, _ in trackers[a_name].calls] == ["plan", "plan"]  # a, and b (its fallback unit)
    assert plans["a"][1] and plans["b"][1]  # leased by the tracker
    assert not plans["c"][1] and set(plans["c"][0].endpoints) == {"c-0", "c-1", "c-2"}  # planned locally, no lease
    assert away == (True, True, False)  # only c's shard is away


def test_one_shard_is_the_tracker_itself():
    cfg, trackers = fake_cluster(1)
    shards = TrackerShards(cfg, trackers.__getitem__)
    assert shards.names == ["tr"] and shard_config(cfg, shards.map, 0) is cfg

    async def scenario():
        shards.report([TurnClosed("t9")])
        return await shards.snapshot()

    assert len(asyncio.run(scenario())) == 6
    assert [m for m, _ in trackers["tr"].calls] == ["report", "snapshot"]


@pytest.mark.parametrize("count", [0, 65])
def test_the_shard_count_is_bounded(count):
    with pytest.raises(ConfigError):
        config(count)
