"""Plans per second the routing state answers with 1, 2 and 4 tracker
shards (``deployments.tracker_shards``), under many concurrent planners.

Each run: ``--groups`` model groups of ``--endpoints`` latency-based
endpoints each, split over the shards by ``router.shards.ShardMap``; the
tracker shards made as the router makes them (``get_or_create_trackers``);
``--planners`` planner actors (stand-ins for ingress replicas), each keeping
``--in-flight`` plan calls outstanding for ``--seconds``, every call for the
next group in turn and sent to that group's shard, with the turn's lease
taken and released a moment later in a batched report (as a caller does),
so leases come and go as in service. Reports plans/s (total, and per
shard), plan latency p50/p99 as the planners see it, and each shard's own
CPU time per plan (so what one shard answers on a core of its own: the
sizing rule in the README).

    python benchmarks/tracker_shards.py [--shards 1 2 4] [--seconds 10]

One local Ray instance of its own (every core); about 15 s per shard count.
Saves JSON and Markdown under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil
import ray

RESULTS = Path(__file__).resolve().parent / "results"


def bench_config(groups: int, endpoints: int, shards: int, namespace: str):
    from router.config import parse_config

    return parse_config({
        "model_groups": {
            f"g{g}": {"strategy": "latency-based", "endpoints": [
                {"name": f"g{g}-e{e}", "base_url": "http://127.0.0.1:9/v1", "model": "m"} for e in range(endpoints)]}
            for g in range(groups)
        },
        "turn_log": {"sink": "none"},
        "deployments": {"tracker_name": "bench-tracker", "tracker_namespace": namespace, "tracker_shards": shards},
        "metrics": {"enabled": False},
        "cache": {"enabled": False},
    })  # fmt: skip


@ray.remote(num_cpus=0)
class Planner:
    """One ingress replica's worth of planning: ``in_flight`` turns at a time."""

    def __init__(self, config):
        from deployments.tracker import tracker_handles
        from router.shards import ShardMap

        self._shards = ShardMap(config, config.deployments.tracker_shards)
        self._trackers = tracker_handles(config)
        self._groups = list(config.model_groups)

    async def run(self, seconds: float, in_flight: int, worker: int) -> dict:
        from router.outcome import AttemptOutcome, OutcomeKind

        latencies: list[float] = []
        per_shard = [0] * len(self._trackers)
        pending: list[list] = [[] for _ in self._trackers]
        deadline = time.monotonic() + seconds
        counter = 0

        async def one_turn(slot: int) -> None:
            nonlocal counter
            own = 0  # each slot walks the groups in turn (a shared counter would lock slots onto one parity)
            while time.monotonic() < deadline:
                counter += 1
                own += 1
                group = self._groups[(slot + own) % len(self._groups)]
                shard = self._shards.of_group(group)
                turn_id = f"w{worker}-{counter}"
                started = time.perf_counter()
                plan = await self._trackers[shard].plan.remote((group, (), False, 1, True, turn_id))
                latencies.append(time.perf_counter() - started)
                per_shard[shard] += 1
                endpoint = plan.endpoints[0]
                pending[shard].append(AttemptOutcome(endpoint, OutcomeKind.OK, 0.2, ttft_s=0.05,
                                                     lease=(turn_id, 0)))

        async def reporter() -> None:
            while time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # the callers' report interval
                for shard, events in enumerate(pending):
                    if events:
                        pending[shard] = []
                        self._trackers[shard].report.remote(events)

        await asyncio.gather(reporter(), *(one_turn(slot) for slot in range(in_flight)))
        return {"plans": len(latencies), "per_shard": per_shard, "latencies_ms": [x * 1e3 for x in latencies[::10]]}


def run_once(shards: int, args) -> dict:
    from deployments.tracker import get_or_create_trackers

    namespace = f"bench-shards-{shards}-{os.getpid()}"
    config = bench_config(args.groups, args.endpoints, shards, namespace)
    trackers = get_or_create_trackers(config)
    ray.get([t.ping.remote() for t in trackers])
    planners = [Planner.options(namespace=namespace).remote(config) for _ in range(args.planners)]
    ray.get([p.__ray_ready__.remote() for p in planners])
    # Each shard's own CPU time per plan: what one shard can answer on a core of its own.
    processes = [psutil.Process(ray.get(t.__ray_call__.remote(lambda self: os.getpid()))) for t in trackers]
    cpu_before = [sum(p.cpu_times()[:2]) for p in processes]
    started = time.monotonic()
    results = ray.get([p.run.remote(args.seconds, args.in_flight, i) for i, p in enumerate(planners)])
    elapsed = time.monotonic() - started
    cpu_s = [sum(p.cpu_times()[:2]) - before for p, before in zip(processes, cpu_before)]
    for actor in planners + trackers:
        ray.kill(actor)
    plans = sum(r["plans"] for r in results)
    per_shard = [sum(r["per_shard"][s] for r in results) for s in range(shards)]
    latencies = sorted(x for r in results for x in r["latencies_ms"])
    return {
        "shards": shards, "plans": plans, "seconds": elapsed, "plans_per_s": plans / elapsed,
        "tracker_cpu_ms_per_plan": sum(cpu_s) / plans * 1e3, "tracker_cpu_share": [c / elapsed for c in cpu_s],
        "per_shard_plans_per_s": [p / elapsed for p in per_shard],
        "p50_ms": statistics.median(latencies), "p99_ms": latencies[int(0.99 * (len(latencies) - 1))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--endpoints", type=int, default=4)
    parser.add_argument("--planners", type=int, default=4)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", default="tracker_shards")
    args = parser.parse_args()
    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        rows = [run_once(shards, args) for shards in args.shards]
    finally:
        ray.shutdown()
    cores = os.cpu_count()
    head = (f"Measured {datetime.now(timezone.utc).isoformat(timespec='seconds')} on {cores} cores: {args.groups} groups x "
            f"{args.endpoints} endpoints, {args.planners} planners x {args.in_flight} plans in flight, {args.seconds:.0f} s per run.")
    lines = [head, "", "| shards | plans/s | per shard | vs 1 shard | plan p50 ms | plan p99 ms | tracker CPU per plan | each shard's CPU use |",
             "|---|---|---|---|---|---|---|---|"]
    base = rows[0]["plans_per_s"]
    for row in rows:
        shard_rates = " / ".join(f"{x:.0f}" for x in row["per_shard_plans_per_s"])
        lines.append(f"| {row['shards']} | {row['plans_per_s']:.0f} | {shard_rates} | x{row['plans_per_s'] / base:.2f} | "
                     f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['tracker_cpu_ms_per_plan']:.3f} ms | "
                     + " / ".join(f"{share:.0%}" for share in row["tracker_cpu_share"]) + " |")
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.md").write_text(text + "\n")
    (RESULTS / f"{args.out}.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
