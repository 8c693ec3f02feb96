"""Placement by Ray custom resources (``deployments.ingress_resources``,
``caller_resources``, ``actor_resources``): validated config, and what the
deployments and the cluster-wide actors ask Ray for. No Ray is started; the
multi-node behaviour is tests/test_e2e_multinode.py."""

from __future__ import annotations

import pytest

from router.config import parse_config
from router.errors import ConfigError

GROUPS = {"g": {"endpoints": [{"name": "e", "base_url": "http://127.0.0.1:1/v1", "model": "m"}]}}


def config(**deployments):
    return parse_config({"model_groups": GROUPS, "deployments": deployments})


def test_placement_defaults_to_anywhere():
    options = config().deployments
    assert options.ingress_resources == options.caller_resources == options.actor_resources == {}


def test_placement_resources_parse():
    options = config(ingress_resources={"nemo_head": 0.01}, caller_resources={"nemo_caller": 1},
                     actor_resources={"nemo_state": 0.001}).deployments
    assert options.caller_resources == {"nemo_caller": 1.0}
    assert options.actor_resources == {"nemo_state": 0.001}
    assert options.ingress_resources == {"nemo_head": 0.01}


@pytest.mark.parametrize("field, value, reason", [
    ("caller_resources", {"CPU": 1}, "Ray's own resource"),
    ("actor_resources", {"memory": 1}, "Ray's own resource"),
    ("caller_resources", {"nemo_caller": 0}, "greater than 0"),
    ("caller_resources", {"nemo_caller": -1}, "greater than 0"),
    ("ingress_resources", {"bad name": 1}, "pattern"),
    ("ingress_resources", {"": 1}, "pattern"),
    ("caller_labels", {"x": 1}, "Extra inputs"),
])
def test_bad_placement_is_refused_with_its_path(field, value, reason):
    with pytest.raises(ConfigError) as error:
        config(**{field: value})
    text = str(error.value)
    assert f"deployments.{field}" in text or "deployments" in text
    assert reason in text


def test_deployments_ask_for_their_resources():
    from deployments.caller import caller_deployment
    from deployments.ingress import ingress_deployment

    cfg = config(ingress_resources={"nemo_head": 0.01}, caller_resources={"nemo_caller": 1})
    assert caller_deployment(cfg).ray_actor_options["resources"] == {"nemo_caller": 1.0}
    assert ingress_deployment(cfg).ray_actor_options["resources"] == {"nemo_head": 0.01}
    assert caller_deployment(cfg).ray_actor_options["num_cpus"] == 0


def test_cluster_wide_actors_ask_for_the_actor_resources(monkeypatch):
    """Every cluster-wide actor is made (``named_actor`` / ``configured_actor``)
    with the configured resources (so Ray restarts it only where they exist)."""
    import deployments.named_actor as named

    made = []

    class FakeRemote:
        def __init__(self, cls):
            self.cls = cls

        def options(self, **options):
            made.append((self.cls.__name__, options))
            return self

        def remote(self, *args):
            return self

        @property
        def reconfigure(self):  # a redeploy's call on an existing actor
            return self

    monkeypatch.setattr(named.ray, "remote", FakeRemote)
    monkeypatch.setattr(named.ray, "get", lambda ref: None)
    # The configs recorded for restarts live in the GCS; no Ray here.
    monkeypatch.setattr(named, "recorded_arguments", lambda namespace, name: None)
    monkeypatch.setattr(named, "_record", lambda namespace, name, args: None)
    import deployments.tracker as tracker_module

    monkeypatch.setattr(tracker_module, "retire", lambda name, namespace: False)  # no shards left from before
    from deployments.cache_actor import get_or_create_cache_actor
    from deployments.metrics_hub import get_or_create_metrics_hub
    from deployments.tracker import get_or_create_tracker

    cfg = config(actor_resources={"nemo_state": 0.001})
    get_or_create_tracker(cfg)
    get_or_create_cache_actor(cfg)
    get_or_create_metrics_hub(resources=cfg.deployments.actor_resources)
    assert [name for name, _ in made] == ["LatencyTracker", "ResponseCacheActor", "MetricsHub"]  # each reconfigurable
    for _, options in made:
        assert options["resources"] == {"nemo_state": 0.001}
        assert options["max_restarts"] == -1 and options["lifetime"] == "detached"
    made.clear()
    get_or_create_tracker(config())
    assert made[0][1]["resources"] == {}
