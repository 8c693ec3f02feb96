"""Replica counts: fixed by default, or Serve's autoscaling between bounds
for the ingress and the provider-callers. No Ray cluster: the deployments'
options are read off the built deployments."""

from __future__ import annotations

import pytest

from deployments.caller import caller_deployment
from deployments.ingress import ingress_deployment
from router.config import parse_config
from router.errors import ConfigError

GROUPS = {"g": {"endpoints": [{"name": "e", "base_url": "http://127.0.0.1:9/v1", "model": "m"}]}}


def test_fixed_counts_by_default_and_autoscaling_when_asked():
    fixed = parse_config({"model_groups": GROUPS, "deployments": {"ingress_replicas": 2, "caller_replicas": 3}})
    assert ingress_deployment(fixed)._deployment_config.num_replicas == 2
    assert caller_deployment(fixed)._deployment_config.num_replicas == 3
    assert caller_deployment(fixed)._deployment_config.autoscaling_config is None

    scaled = parse_config({"model_groups": GROUPS, "deployments": {
        "caller_autoscaling": {"min_replicas": 2, "max_replicas": 8, "target_ongoing_requests": 50},
        "ingress_autoscaling": {"max_replicas": 4},
    }})  # fmt: skip
    caller = caller_deployment(scaled)._deployment_config.autoscaling_config
    assert (caller.min_replicas, caller.max_replicas, caller.target_ongoing_requests) == (2, 8, 50)
    assert (caller.upscale_delay_s, caller.downscale_delay_s) == (10.0, 300.0)
    ingress = ingress_deployment(scaled)._deployment_config.autoscaling_config
    assert (ingress.min_replicas, ingress.max_replicas) == (1, 4)


@pytest.mark.parametrize("bad", [
    {"min_replicas": 0, "max_replicas": 2}, {"min_replicas": 3, "max_replicas": 2}, {"max_replicas": 2, "target_ongoing_requests": 0},
    {"max_replicas": 2, "initial_replicas": 1},
])  # fmt: skip
def test_bad_autoscaling_is_refused_at_start_up(bad):
    with pytest.raises(ConfigError):
        parse_config({"model_groups": GROUPS, "deployments": {"caller_autoscaling": bad}})
