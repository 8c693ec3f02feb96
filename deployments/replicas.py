"""How many replicas a deployment runs: a fixed count, or Serve's
autoscaling between bounds (``deployments.ingress_autoscaling`` /
``caller_autoscaling``), as ``serve.deployment`` options."""

from __future__ import annotations

from router.config import ReplicaAutoscaling

__all__ = ["replica_options"]


def replica_options(count: int, autoscaling: ReplicaAutoscaling | None) -> dict:
    if autoscaling is None:
        return {"num_replicas": count}
    return {"autoscaling_config": autoscaling.model_dump()}
