"""The one way the router's cluster-wide actors are made: named, detached
(they outlive the driver that created them), restarted by Ray without limit
when they die, asking for no CPU, and found by name when they already exist
(so every replica and every redeploy shares the same one).

``configured_actor`` is how a redeploy reaches them (``router.rollout``):
an actor that exists is reconfigured in place (its ``reconfigure`` takes
the same arguments as its constructor and carries its state over), and the
arguments are recorded first in the cluster's GCS key-value store, so an
actor that Ray restarts later comes back with the latest arguments rather
than the ones it was first made with. The GCS outlives every actor of the
cluster (Ray Serve keeps its own checkpoints there for the same reason).
"""

from __future__ import annotations

import logging

import ray
from ray import cloudpickle
from ray.experimental import internal_kv

__all__ = ["configured_actor", "named_actor", "recorded_arguments", "retire"]

log = logging.getLogger(__name__)

RECORDS = "nemo-router-actors"  # the GCS key-value namespace of the records


def named_actor(cls: type, name: str, namespace: str, *args, resources: dict[str, float] | None = None) -> "ray.actor.ActorHandle":
    """The actor ``name`` in ``namespace``, created from ``cls(*args)`` if it
    does not exist yet (an existing one keeps the arguments it was made with).
    ``resources``: Ray custom resources it asks for, so it is placed (and,
    when its node is lost, restarted) only on nodes that have them
    (``deployments.actor_resources``)."""
    return _get_or_create(cls, name, namespace, args, resources)


def configured_actor(cls: type, name: str, namespace: str, *args, resources: dict[str, float] | None = None) -> "ray.actor.ActorHandle":
    """The actor ``name`` in ``namespace``, running ``cls(*args)``'s config:
    created with ``args`` if it does not exist, else reconfigured in place
    (``reconfigure(*args)``, waited for: a redeploy's replicas start only
    once it is done). Ray restarts it with the latest recorded ``args``; a
    reconfigure that fails (the deploy fails) leaves the record as it was.
    ``resources``: as for ``named_actor`` (an existing actor keeps its place)."""
    previous = recorded_arguments(namespace, name)
    _record(namespace, name, args)  # first: an actor made now, or restarted now, starts from these
    try:
        actor = _get_or_create(_restarted_with_record(cls), name, namespace, (namespace, name, args), resources)
        try:
            reconfigure = actor.reconfigure
        except AttributeError:  # a detached actor left by an older router outlives redeploys
            log.warning("actor %r predates config rollout: kill it (ray.kill) to have a redeploy's config reach it", name)
            return actor
        ray.get(reconfigure.remote(*args))
    except BaseException:
        if previous is None:
            internal_kv._internal_kv_del(_key(namespace, name), namespace=RECORDS)
        else:
            _record(namespace, name, previous)
        raise
    return actor


def recorded_arguments(namespace: str, name: str) -> tuple | None:
    """The arguments a ``configured_actor`` was last given, or None."""
    value = internal_kv._internal_kv_get(_key(namespace, name), namespace=RECORDS)
    return None if value is None else cloudpickle.loads(value)


def retire(name: str, namespace: str) -> bool:
    """Kill the actor ``name`` for good (no restart) and forget its record;
    False if there was none. Its in-flight calls fail (callers treat the
    router's actors as best effort: ``deployments.planner``)."""
    internal_kv._internal_kv_del(_key(namespace, name), namespace=RECORDS)
    try:
        actor = ray.get_actor(name, namespace=namespace)
    except ValueError:
        return False
    ray.kill(actor, no_restart=True)
    return True


def _get_or_create(cls: type, name: str, namespace: str, args: tuple, resources: dict[str, float] | None) -> "ray.actor.ActorHandle":
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


def _key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def _record(namespace: str, name: str, args: tuple) -> None:
    internal_kv._internal_kv_put(_key(namespace, name), cloudpickle.dumps(args), overwrite=True, namespace=RECORDS)


def _restarted_with_record(cls: type) -> type:
    """``cls``, made from its latest recorded arguments when they exist (Ray
    calls ``__init__`` again, with the first arguments, on every restart)."""

    def __init__(self, namespace: str, name: str, args: tuple) -> None:
        try:
            recorded = recorded_arguments(namespace, name)
        except Exception:  # the record is an improvement, never a reason not to start
            log.warning("could not read the recorded config of actor %r; starting with the first one", name, exc_info=True)
            recorded = None
        cls.__init__(self, *(recorded if recorded is not None else args))

    return type(cls.__name__, (cls,), {"__init__": __init__, "__module__": cls.__module__, "__doc__": cls.__doc__})
