"""The LatencyTracker can die: turns keep flowing, and it comes back with
fresh signal."""

from __future__ import annotations

import time

import pytest
from helpers import ADMIN

pytestmark = pytest.mark.ray

USER = [{"role": "user", "content": "hi"}]


def test_turns_survive_a_tracker_restart(client, ray_session):
    from router.config import DeploymentConfig

    options = DeploymentConfig()
    for _ in range(5):
        client.post("/v1/chat/completions", json={"model": "voice-fast", "messages": USER})
    time.sleep(0.2)
    turns_before = client.get("/v1/routing", headers=ADMIN).json()["endpoints"]["sim-fast"]["turns"]
    assert turns_before >= 5

    tracker = ray_session.get_actor(options.tracker_name, namespace=options.tracker_namespace)
    ray_session.kill(tracker, no_restart=False)
    statuses = [
        client.post("/v1/chat/completions", json={"model": "voice-fast", "messages": USER}).status_code for _ in range(10)
    ]
    assert statuses == [200] * 10

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = client.get("/v1/routing", headers=ADMIN)
        if response.status_code == 200:
            break
        time.sleep(0.5)
    assert response.status_code == 200
    # Restarted with fresh state: the turns before the kill are not counted.
    assert response.json()["endpoints"]["sim-fast"]["turns"] < turns_before + 10
