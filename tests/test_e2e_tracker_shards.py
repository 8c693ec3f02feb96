"""Tracker shards end to end (``deployments.tracker_shards``): a router whose
routing state is split over two tracker actors plans each group's turns on
its own shard, outcomes come back to that shard, ``/v1/routing`` shows
every endpoint; redeployed with one shard, the second is retired and the
first plans for both groups."""

from __future__ import annotations

import httpx
import openai
import pytest
from helpers import ADMIN_KEY, TEST_KEY, sim_endpoint

pytestmark = pytest.mark.ray

APP = "nemo-router-shards"
PREFIX = "/shards"
TRACKER = "nemo-tracker-shards"
NAMESPACE = "nemo-router"
USER = [{"role": "user", "content": "count for me"}]


def shards_config(simulator, count: int):
    from router.config import parse_config
    from router.keys import hash_key

    return parse_config({
        "model_groups": {
            "sh-a": {"endpoints": [sim_endpoint(simulator, "sh-a-0", "fast"), sim_endpoint(simulator, "sh-a-1", "medium")]},
            "sh-b": {"endpoints": [sim_endpoint(simulator, "sh-b-0", "backup")]},
        },
        "auth": {"keys": [{"name": "test", "hash": hash_key(TEST_KEY)}], "admin_key_hash": hash_key(ADMIN_KEY)},
        "turn_log": {"sink": "none"},
        "deployments": {"tracker_name": TRACKER, "tracker_shards": count, "report_interval_s": 0.02},
        "cache": {"enabled": False},
        "metrics": {"enabled": False},
    })  # fmt: skip


def shard_snapshot(ray_session, name: str) -> dict:
    return ray_session.get(ray_session.get_actor(name, namespace=NAMESPACE).snapshot.remote(), timeout=10)


def shard_exists(ray_session, name: str) -> bool:
    try:
        ray_session.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return False
    return True


def wait_until(condition, what: str, timeout_s: float = 15.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def test_each_group_is_planned_on_its_shard_and_one_shard_again_retires_the_other(router, simulator, ray_session):
    from ray import serve

    from deployments.app import build_app
    from router.shards import ShardMap

    config = shards_config(simulator, 2)
    shards = ShardMap(config, 2)
    names = {0: TRACKER, 1: f"{TRACKER}-shard-1"}
    serve.run(build_app(config), name=APP, route_prefix=PREFIX)
    try:
        client = openai.OpenAI(base_url=f"{router}{PREFIX}/v1", api_key=TEST_KEY, max_retries=0, timeout=20)
        for _ in range(3):
            for group in ("sh-a", "sh-b"):
                assert client.chat.completions.create(model=group, messages=USER).choices[0].message.content
        for group, endpoints in (("sh-a", {"sh-a-0", "sh-a-1"}), ("sh-b", {"sh-b-0"})):
            name = names[shards.of_group(group)]
            assert set(shard_snapshot(ray_session, name)) == endpoints  # this shard holds only its groups
            wait_until(lambda: sum(row["turns"] for row in shard_snapshot(ray_session, name).values()) == 3,
                       f"{name} has the outcomes of {group}'s 3 turns")
            assert all(row["in_flight"] == 0 for row in shard_snapshot(ray_session, name).values())
        routing = httpx.get(f"{router}{PREFIX}/v1/routing", headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)
        assert routing.status_code == 200 and set(routing.json()["endpoints"]) == {"sh-a-0", "sh-a-1", "sh-b-0"}

        serve.run(build_app(shards_config(simulator, 1)), name=APP, route_prefix=PREFIX)
        assert not shard_exists(ray_session, names[1])  # retired by the build
        assert set(shard_snapshot(ray_session, TRACKER)) == {"sh-a-0", "sh-a-1", "sh-b-0"}
        for group in ("sh-a", "sh-b"):
            assert client.chat.completions.create(model=group, messages=USER).choices[0].message.content
    finally:
        serve.delete(APP)
        for name in names.values():
            if shard_exists(ray_session, name):
                ray_session.kill(ray_session.get_actor(name, namespace=NAMESPACE), no_restart=True)
