"""Resident memory and CPU time of one process tree: a root process and all
its descendants, each labelled by what it is in the router's Ray cluster.

``nemo-router run`` starts its own Ray, so its tree holds the whole router:
GCS, raylet, the Serve controller and proxies, HAProxy, and one worker per
replica or actor. Ray renames workers after the task they run
(``ray::ServeReplica:nemo-router:Ingress.initialize_and_get_metadata``), so
labels come from substrings of the command line, not exact names.

    before = sample_tree(pid)
    ...
    cpu = cpu_s_between(before, sample_tree(pid))   # {"total": s, "by_label": {...}, "vanished": n}
    memory = memory_mb(sample_tree(pid, uss=True))  # {"rss_mb": ..., "uss_mb": ..., "by_label": {...}}

RSS counts shared pages (libraries, Ray's shared-memory object store) once
per process that maps them, so a tree's RSS sum overstates what it holds;
USS (pages only that process holds) does not, but reading it walks
``/proc/PID/smaps`` and costs a few ms per process.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import psutil

__all__ = ["ProcessSample", "sample_tree", "memory_mb", "cpu_s_between"]

MB = 1024 * 1024

# First match wins, against the first three words of the command line (a
# native binary's later flags mention other components' paths).
_LABELS = (
    ("gcs_server", "gcs"),
    ("raylet", "raylet"),
    ("bin/haproxy", "haproxy"),
    ("ProviderCaller", "caller"),
    ("Ingress", "ingress"),
    ("LatencyTracker", "tracker"),
    ("MetricsHub", "metrics-hub"),
    ("ResponseCacheActor", "cache"),
    ("KeyStore", "keystore"),
    ("HealthProber", "health-prober"),
    ("ServeController", "serve-controller"),
    ("HAProxyManager", "haproxy-manager"),
    ("ProxyActor", "serve-proxy"),
    ("ashboard", "dashboard"),  # dashboard.py and ray::DashboardAgent
    ("RuntimeEnvAgent", "runtime-env-agent"),
    ("monitor.py", "ray-monitors"),  # the autoscaler's and the log monitor
    ("ray::IDLE", "idle-worker"),
)


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """One process at one moment. ``created_s`` (epoch seconds) with ``pid``
    tells a process apart from a later one that reuses its pid; ``cpu_s`` is
    user + system time since it started; ``uss_bytes`` is None unless asked."""

    pid: int
    created_s: float
    label: str
    rss_bytes: int
    uss_bytes: int | None
    cpu_s: float


def _label(process: psutil.Process, root_pid: int) -> str:
    if process.pid == root_pid:
        return "driver"
    command = " ".join(process.cmdline()[:3]) or process.name()
    return next((label for needle, label in _LABELS if needle in command), process.name())


def _sample(process: psutil.Process, root_pid: int, uss: bool) -> ProcessSample:
    with process.oneshot():
        cpu = process.cpu_times()
        return ProcessSample(
            pid=process.pid,
            created_s=process.create_time(),
            label=_label(process, root_pid),
            rss_bytes=process.memory_info().rss,
            uss_bytes=process.memory_full_info().uss if uss else None,
            cpu_s=cpu.user + cpu.system,
        )


def sample_tree(root_pid: int, *, uss: bool = False) -> list[ProcessSample]:
    """Every live process of the tree under ``root_pid``, the root included.
    Processes that exit while being read are left out."""
    root = psutil.Process(root_pid)
    samples = []
    for process in (root, *root.children(recursive=True)):
        try:
            samples.append(_sample(process, root_pid, uss))
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
    return samples


def memory_mb(samples: list[ProcessSample]) -> dict:
    """Tree totals and per-label sums, in MiB (USS None if not sampled)."""
    by_label: dict[str, dict] = defaultdict(lambda: {"rss_mb": 0.0, "uss_mb": 0.0, "processes": 0})
    for s in samples:
        entry = by_label[s.label]
        entry["rss_mb"] += s.rss_bytes / MB
        entry["uss_mb"] += (s.uss_bytes or 0) / MB
        entry["processes"] += 1
    has_uss = all(s.uss_bytes is not None for s in samples)
    return {
        "rss_mb": sum(s.rss_bytes for s in samples) / MB,
        "uss_mb": sum(s.uss_bytes for s in samples) / MB if has_uss else None,
        "processes": len(samples),
        "by_label": dict(sorted(by_label.items(), key=lambda item: -item[1]["rss_mb"])),
    }


def cpu_s_between(before: list[ProcessSample], after: list[ProcessSample]) -> dict:
    """CPU seconds the tree spent between two samples, in total and by label.

    A process in both counts its difference; one that appeared in between
    counts all its time (it started after ``before``). One that exited in
    between is counted in ``vanished``: its time after ``before`` is lost,
    so a non-zero count means the total is a lower bound.
    """
    start = {(s.pid, s.created_s): s.cpu_s for s in before}
    by_label: dict[str, float] = defaultdict(float)
    for s in after:
        by_label[s.label] += s.cpu_s - start.get((s.pid, s.created_s), 0.0)
    alive = {(s.pid, s.created_s) for s in after}
    return {
        "total": sum(by_label.values()),
        "by_label": dict(sorted(by_label.items(), key=lambda item: -item[1])),
        "vanished": sum(1 for key in start if key not in alive),
    }
