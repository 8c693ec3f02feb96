"""Nothing already logged is lost (issue 14): a provider-caller replica
SIGKILLed before it flushes its turn log leaves its records in its
write-ahead log, and the replica Serve starts in its place writes them:
the turn log holds exactly one row per turn served.

Its own app (own tracker, one caller replica, a flush interval of an hour)
so that killing the caller disturbs no other test.
"""

from __future__ import annotations

import collections
import os
import signal
import time
import uuid

import httpx
import pytest
from helpers import replica_pids

pytestmark = pytest.mark.ray

APP = "nemo-router-wal"
PREFIX = "/wal"
USER = [{"role": "user", "content": "remember me"}]
TURNS = 12


@pytest.fixture(scope="module")
def wal_app(router, simulator, tmp_path_factory):
    from ray import serve

    from deployments.app import build_app
    from router.config import parse_config

    simulator.set_behavior("wal-fast", ttft_ms=5, token_interval_ms=1, tokens=5)
    turn_log = tmp_path_factory.mktemp("wal-turnlog")
    config = parse_config(
        {
            "model_groups": {
                "wal-group": {"endpoints": [{"name": "wal-fast", "base_url": simulator.base_url("wal-fast"), "model": "sim-model"}]},
            },
            # Only the WAL can save these records: no flush comes in time.
            "turn_log": {"sink": "local", "path": str(turn_log), "flush_interval_s": 3600, "flush_max_records": 10_000},
            "deployments": {"tracker_name": "nemo-tracker-wal", "caller_replicas": 1},
            "cache": {"enabled": False},
            "metrics": {"enabled": False},
        }
    )
    serve.run(build_app(config), name=APP, route_prefix=PREFIX)
    yield f"{router}{PREFIX}", turn_log
    serve.delete(APP)


def caller_pids() -> list[int]:
    return replica_pids(APP, "ProviderCaller")


def wait_until(predicate, timeout_s: float, interval_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval_s)
    return predicate()


def logged_ids(turn_log) -> list[str]:
    from nemo_turnlog import read_turn_log

    return read_turn_log(turn_log).column("request_id").to_pylist()


def wal_ids(turn_log) -> list[str]:
    from nemo_turnlog.wal import Segment, read_segment

    ids = []
    for path in (turn_log / "_wal").glob("*.wal"):
        try:
            ids += [record.request_id for record in read_segment(Segment(path, ""))[0]]
        except FileNotFoundError:
            continue
    return ids


def test_a_caller_killed_before_its_flush_loses_no_record(wal_app):
    url, turn_log = wal_app
    (pid,) = caller_pids()
    request_ids = [f"wal-{i}-{uuid.uuid4().hex[:8]}" for i in range(TURNS)]
    with httpx.Client(timeout=20) as client:
        for i, rid in enumerate(request_ids):
            body = {"model": "wal-group", "messages": USER, "stream": i % 2 == 0}
            response = client.post(f"{url}/v1/chat/completions", json=body, headers={"x-request-id": rid})
            assert response.status_code == 200
    # Every record is in the WAL and none in the turn log: the buffer is
    # all that would be lost without it.
    assert wait_until(lambda: sorted(wal_ids(turn_log)) == sorted(request_ids), timeout_s=10)
    assert not set(logged_ids(turn_log)) & set(request_ids)

    os.kill(pid, signal.SIGKILL)  # only the caller replica this test deployed
    restarted = wait_until(lambda: [p for p in caller_pids() if p != pid], timeout_s=60)
    assert restarted, "Serve did not restart the caller replica"

    def all_logged():
        ids = [rid for rid in logged_ids(turn_log) if rid in request_ids]
        return ids if len(ids) >= TURNS else None

    ids = wait_until(all_logged, timeout_s=30, interval_s=0.25)
    assert ids is not None, "the killed caller's records never reached the turn log"
    assert wait_until(lambda: not wal_ids(turn_log), timeout_s=10)  # replayed segments are gone
    counts = collections.Counter(logged_ids(turn_log))
    assert {rid: counts[rid] for rid in request_ids} == dict.fromkeys(request_ids, 1)  # exactly once each
