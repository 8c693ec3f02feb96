"""Scaling: how throughput grows with ingress and caller replicas, and how many
plans per second one LatencyTracker actor can take.

(a) Shapes. Starts a simulated provider (TTFT 50 ms, 20 tokens 5 ms apart),
then for each deployment shape (``IxC``: I ingress replicas, C caller
replicas) starts the router in its own process (fast serve mode, local turn
log, cache off) and measures ``--turns`` streaming turns at each
``--concurrency``, after ``2 x concurrency`` warm-up turns. Reports turns/s,
TTFT p50/p99, errors and the router's CPU per turn: user + system seconds of
its whole process tree (``nemo-router run`` and every Ray process under it,
by component; see procstats.py) over the measured window, divided by the
turns served. The load generator and the simulator run on the same machine
and are not counted, but they take cores from the router.

(b) Tracker. Starts a private local Ray in this process, creates one
``LatencyTracker`` (a group of 3 endpoints) and, for each ``--tracker-in-flight``
level, keeps that many ``plan`` calls in flight for ``--tracker-s`` seconds,
reporting one OK outcome per plan in a fire-and-forget batch every 50 plans
(as caller replicas do) so turns in flight stay realistic. Reports plans/s,
plan-call latency p50/p99 and the CPU the actor and this driver used.

    python benchmarks/scaling.py [--shapes 1x1,1x2,2x1,2x2] [--concurrency 20,50] [--turns 400]
                                 [--tracker-in-flight 1,4,16,64] [--tracker-s 5]
                                 [--skip-shapes] [--skip-tracker] [--out scaling]

Takes about 1-1.5 minutes per shape (most of it starting the router) and
under a minute for the tracker. Prints tables and saves JSON and Markdown
under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import _pct, run_load, summarize  # noqa: E402
from overhead import free_port, save_results, start_router, stop_router, write_config  # noqa: E402
from procstats import cpu_s_between, sample_tree  # noqa: E402

from simprovider import start_simulator  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PROVIDER = {"ttft_ms": 50, "token_interval_ms": 5, "tokens": 20}
CPU_COLUMNS = ("caller", "ingress", "haproxy", "tracker")  # components shown per row
TRACKER_GROUP = "grp"
REPORT_EVERY_PLANS = 50
TRACKER_WARMUP_S = 1.0
# What each plan's reported attempt came to: a healthy turn on the simulator.
TRACKER_TTFT_S, TRACKER_TURN_S = 0.05, 0.15
TRACKER_CAVEAT = (
    "Plan calls are made from a plain Ray driver in the benchmark process, not from a Serve replica; "
    "a replica's call path (and its event loop's load) differs, so per-call latency there may differ. "
    "The driver shares the machine's cores with the actor: if the actor is not near one busy core, "
    "the driver was the limit and plans/s is a lower bound for the actor."
)


# ---- (a) deployment shapes ----------------------------------------------------


def parse_shape(text: str) -> tuple[int, int]:
    ingress, caller = text.lower().split("x")
    return int(ingress), int(caller)


def write_shape_config(directory: Path, provider_url: str, port: int, ingress: int, caller: int) -> Path:
    """overhead.py's one-group config, with this shape's replica counts."""
    path = write_config(directory, provider_url, port)
    config = yaml.safe_load(path.read_text())
    config["deployments"] = {"ingress_replicas": ingress, "caller_replicas": caller}
    path.write_text(yaml.safe_dump(config))
    return path


def measure_level(url: str, router_pid: int, concurrency: int, turns: int) -> dict:
    # Warm every replica, connection pool and code path before counting.
    asyncio.run(run_load(url, "bench", concurrency=concurrency, turns=2 * concurrency, warmup=0))
    before, start = sample_tree(router_pid), time.perf_counter()
    result = asyncio.run(run_load(url, "bench", concurrency=concurrency, turns=turns, warmup=0))
    cpu, wall_s = cpu_s_between(before, sample_tree(router_pid)), time.perf_counter() - start
    summary = summarize(result)
    served = max(summary["turns_ok"], 1)
    return summary | {
        "cpu_ms_per_turn": 1000 * cpu["total"] / served,
        "cores_busy": cpu["total"] / wall_s,
        "cpu_ms_per_turn_by_label": {label: 1000 * s / served for label, s in cpu["by_label"].items()},
        "vanished_processes": cpu["vanished"],
    }


def measure_shapes(shapes: list[tuple[int, int]], levels: list[int], turns: int) -> dict:
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp, start_simulator({"bench": PROVIDER}) as sim:
        for ingress, caller in shapes:
            name = f"{ingress}x{caller}"
            port = free_port()
            config_path = write_shape_config(Path(tmp), sim.base_url("bench"), port, ingress, caller)
            print(f"starting the router, {ingress} ingress x {caller} caller replicas ...", flush=True)
            router = start_router(config_path, "fast", port, Path(tmp) / f"router-{name}.log")
            try:
                rows[name] = {f"c{c}": measure_level(f"http://127.0.0.1:{port}/v1", router.pid, c, turns) for c in levels}
            finally:
                stop_router(router)
            print(shape_table({name: rows[name]}, rows.get("1x1")), flush=True)
    return rows


def shape_table(rows: dict, baseline: dict | None = None) -> str:
    header = ["shape (ingress x caller)", "conc", "turns/s", "vs 1x1", "TTFT p50 ms", "TTFT p99 ms", "errors", "CPU ms/turn", "cores busy"]
    header += [f"{label} CPU ms/turn" for label in CPU_COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, levels in rows.items():
        for level, s in levels.items():
            base = (baseline or rows.get("1x1", {})).get(level)
            ratio = f"{s['turns_per_s'] / base['turns_per_s']:.2f}x" if base else ""
            by_label = [f"{s['cpu_ms_per_turn_by_label'].get(label, 0.0):.1f}" for label in CPU_COLUMNS]
            cells = [name, level[1:], f"{s['turns_per_s']:.1f}", ratio, f"{s['ttft_p50_ms']:.1f}", f"{s['ttft_p99_ms']:.1f}"]
            cells += [str(s["errors"]), f"{s['cpu_ms_per_turn']:.1f}", f"{s['cores_busy']:.2f}", *by_label]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- (b) the LatencyTracker's capacity ---------------------------------------


def tracker_config():
    from router.config import parse_config

    endpoints = [{"name": f"tracker-bench-{i}", "base_url": "http://127.0.0.1:9/v1", "model": "sim-model"} for i in range(3)]
    # A name of its own: never the router's tracker, even on a shared cluster.
    name = f"scaling-bench-tracker-{os.getpid()}"
    return parse_config({"model_groups": {TRACKER_GROUP: {"endpoints": endpoints}}, "deployments": {"tracker_name": name}})


async def plans_at(tracker, in_flight: int, duration_s: float) -> dict:
    """Keep ``in_flight`` plan calls going for ``duration_s``; latencies in s."""
    from router.outcome import AttemptOutcome, OutcomeKind

    latencies_s: list[float] = []
    outcomes: list[AttemptOutcome] = []
    deadline = time.monotonic() + duration_s

    async def caller() -> None:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            turn_id = uuid.uuid4().hex
            plan = await tracker.plan.remote((TRACKER_GROUP, (), False, 1, True, turn_id))  # a PlanRequest
            latencies_s.append(time.perf_counter() - start)
            outcomes.append(AttemptOutcome(plan.endpoints[0], OutcomeKind.OK, TRACKER_TURN_S, ttft_s=TRACKER_TTFT_S,
                                           lease=(turn_id, 0)))
            if len(outcomes) >= REPORT_EVERY_PLANS:
                tracker.report.remote(outcomes.copy())  # fire-and-forget, as the reporter does
                outcomes.clear()

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(in_flight)))
    wall_s = time.perf_counter() - start
    if outcomes:
        tracker.report.remote(outcomes)
    await tracker.ping.remote()  # the actor runs calls in order: every report is in
    return {"plans": len(latencies_s), "wall_s": wall_s, "latencies_s": latencies_s}


def measure_tracker(levels: list[int], duration_s: float) -> dict:
    import ray

    from deployments.tracker import get_or_create_tracker

    # address="local": always a new private Ray, never another one on this machine.
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    try:
        tracker = get_or_create_tracker(tracker_config())
        ray.get(tracker.ping.remote())
        asyncio.run(plans_at(tracker, 4, TRACKER_WARMUP_S))  # first calls start the worker and its code paths
        rows = {}
        for in_flight in levels:
            before = sample_tree(os.getpid())
            run = asyncio.run(plans_at(tracker, in_flight, duration_s))
            cpu = cpu_s_between(before, sample_tree(os.getpid()))["by_label"]
            row = rows[f"in_flight_{in_flight}"] = _tracker_row(in_flight, run, cpu)
            print(tracker_table({"": row}), flush=True)
        ray.kill(tracker)
        return rows
    finally:
        ray.shutdown()


def _tracker_row(in_flight: int, run: dict, cpu_by_label_s: dict) -> dict:
    latencies_s, wall_s = run["latencies_s"], run["wall_s"]
    return {
        "in_flight": in_flight,
        "plans": run["plans"],
        "plans_per_s": run["plans"] / wall_s,
        "plan_p50_ms": 1000 * statistics.median(latencies_s),
        "plan_p99_ms": 1000 * _pct(latencies_s, 0.99),
        "tracker_cores_busy": cpu_by_label_s.get("tracker", 0.0) / wall_s,
        "driver_cores_busy": cpu_by_label_s.get("driver", 0.0) / wall_s,
    }


def tracker_table(rows: dict) -> str:
    lines = ["| plans in flight | plans | plans/s | plan p50 ms | plan p99 ms | tracker cores busy | driver cores busy |", "|" + "---|" * 7]
    for r in rows.values():
        lines.append(
            f"| {r['in_flight']} | {r['plans']} | {r['plans_per_s']:.0f} | {r['plan_p50_ms']:.2f} | {r['plan_p99_ms']:.2f} "
            f"| {r['tracker_cores_busy']:.2f} | {r['driver_cores_busy']:.2f} |"
        )
    return "\n".join(lines)


# ---- main -------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", default="1x1,1x2,2x1,2x2", help="deployment shapes, INGRESSxCALLER replicas")
    parser.add_argument("--concurrency", default="20,50", help="concurrency levels measured per shape")
    parser.add_argument("--turns", type=int, default=400, help="measured turns per shape and concurrency")
    parser.add_argument("--tracker-in-flight", default="1,4,16,64", help="concurrent plan calls per tracker level")
    parser.add_argument("--tracker-s", type=float, default=5, help="seconds per tracker level")
    parser.add_argument("--skip-shapes", action="store_true")
    parser.add_argument("--skip-tracker", action="store_true")
    parser.add_argument("--out", default="scaling", help="results file name under benchmarks/results/")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    # SIGTERM ends the run like Ctrl-C, so the router, simulator and Ray are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    shapes = [parse_shape(s) for s in args.shapes.split(",")]
    levels = [int(c) for c in args.concurrency.split(",")]
    report = {
        "benchmark": "scaling",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "provider": PROVIDER,
        "settings": {k: getattr(args, k) for k in ("shapes", "concurrency", "turns", "tracker_in_flight", "tracker_s")},
    }
    sections = []
    if not args.skip_shapes:
        report["shapes"] = measure_shapes(shapes, levels, args.turns)
        sections.append(f"Deployment shapes, {args.turns} streaming turns per row:\n\n{shape_table(report['shapes'])}")
    if not args.skip_tracker:
        in_flight = [int(n) for n in args.tracker_in_flight.split(",")]
        report["tracker"] = measure_tracker(in_flight, args.tracker_s)
        report["tracker_caveat"] = TRACKER_CAVEAT
        sections.append(f"One LatencyTracker actor, {args.tracker_s:g} s per row:\n\n{tracker_table(report['tracker'])}\n\n{TRACKER_CAVEAT}")
    text = "\n\n".join(sections)
    print(f"\n{text}")
    save_results(args.out, report, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
