"""The one way the router's cluster-wide actors are made: named, detached
(they outlive the driver that created them), restarted by Ray without limit
when they die, asking for no CPU, and found by name when they already exist
(so every replica and every redeploy shares the same one)."""

from __future__ import annotations

import ray

__all__ = ["named_actor"]


def named_actor(cls: type, name: str, namespace: str, *args, resources: dict[str, float] | None = None) -> "ray.actor.ActorHandle":
    """The actor ``name`` in ``namespace``, created from ``cls(*args)`` if it
    does not exist yet (an existing one keeps the arguments it was made with).
    ``resources``: Ray custom resources it asks for, so it is placed (and,
    when its node is lost, restarted) only on nodes that have them
    (``deployments.actor_resources``)."""
    # No task events: the tracker takes a call per turn, and Ray's GCS keeps
    # an event record per task (up to 100,000 of them), which grew the GCS by
    # about 16 MB a minute at 80 turns/s in benchmarks/soak.py. The turn log
    # already records every turn.
    return (
        ray.remote(cls)
        .options(
            name=name, namespace=namespace, lifetime="detached", get_if_exists=True, num_cpus=0, max_restarts=-1,
            enable_task_events=False, resources=dict(resources or {}),
        )
        .remote(*args)
    )
