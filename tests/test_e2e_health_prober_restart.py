"""The health prober is a detached actor Ray restarts without limit (its
process crashed, its node was lost): restarted, it probes again, without
anyone calling ``start`` (only the deploy did, once)."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.ray


def test_a_restarted_prober_probes_again(router, ray_session):
    from router.config import DeploymentConfig

    options = DeploymentConfig()
    # The test router's prober: "<tracker>-health-<digest of its checks>" (router.rollout.ActorNames).
    [name] = [a["name"] for a in ray_session.util.list_named_actors(all_namespaces=True)
              if a["namespace"] == options.tracker_namespace and a["name"].startswith(f"{options.tracker_name}-health-")]
    prober = ray_session.get_actor(name, namespace=options.tracker_namespace)
    # The test router's "probed" group checks two endpoints.
    assert ray_session.get(prober.probing.remote(), timeout=10) == 2
    pid = ray_session.get(prober.pid.remote(), timeout=10)

    ray_session.kill(prober, no_restart=False)
    deadline = time.monotonic() + 30
    probing = None
    while time.monotonic() < deadline:
        try:
            if ray_session.get(prober.pid.remote(), timeout=2) != pid:
                probing = ray_session.get(prober.probing.remote(), timeout=2)
                break
        except Exception:  # restarting
            pass
        time.sleep(0.2)
    assert probing == 2
