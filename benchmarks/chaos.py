"""The chaos suite's long version: the router under random upstream faults
and with its own processes killed under load, on this machine, loopback only.

Starts a simulated provider and ``nemo-router run`` (two caller replicas,
local turn log), then runs, each with its own request ids:

1. ``faults``: two of three endpoints flip between random faults (5xx, 429,
   hang, drop, stall, malformed event) and health (``simprovider.chaos``)
   while 400 streamed turns run at concurrency 8;
2. ``caller-killed``: 300 turns at concurrency 8, one provider-caller
   replica SIGKILLed a second in (Serve restarts it);
3. ``tracker-killed``: 300 turns at concurrency 8, the ``LatencyTracker``
   actor's process SIGKILLed a second in (Ray restarts it);
4. ``s3-down``: 30 s of turns at concurrency 8 with the turn log's S3
   (moto's server on loopback) down from the 5th to the 25th second;
5. ``stop-in-flight``: turns at concurrency 8 while the router is stopped
   with SIGTERM two seconds in: turns in flight must finish whole, later
   ones be refused (503 ``router_stopping``, or the port closed once the
   router is gone), and every turn that was served logged.

The turn log goes to S3 throughout (with a local spool for outages).

For each it prints turns sent, completed whole (text gap-free and [DONE]),
ended with a clean SSE error, failed otherwise, rows in the turn log,
duplicate rows and TTFT p50/p99, and saves benchmarks/results/chaos.json
and .md. Stops by itself; ends only the processes it started.

    python benchmarks/chaos.py [--turns 400] [--concurrency 8] [--port P]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import assert_loopback  # noqa: E402
from overhead import free_port, save_results, start_router, stop_router  # noqa: E402

from simprovider import start_simulator  # noqa: E402
from simprovider.chaos import ChaosMonkey  # noqa: E402

TOKENS = 12
WHOLE = " ".join(f"w{i}" for i in range(1, TOKENS + 1))
HEALTHY = {"ttft_ms": 10, "token_interval_ms": 3, "tokens": TOKENS}
ENDPOINTS = ("chaos-a", "chaos-b", "chaos-c")
SCENARIOS = ["faults", "caller-killed", "tracker-killed", "s3-down", "stop-in-flight"]


def router_config(directory: Path, sim, port: int, s3, s3_bucket: str) -> Path:
    config = {
        "server": {"port": port},
        "model_groups": {"chaos": {
            "strategy": "ordered",
            "breaker": {"consecutive_failures": 10_000, "min_requests": 10_000},
            "timeouts": {"first_token_s": 0.5, "stall_s": 0.3, "total_s": 15},
            "endpoints": [{"name": n, "base_url": sim.base_url(n), "model": "sim-model"} for n in ENDPOINTS],
        }},
        "turn_log": {
            "sink": "s3", "flush_interval_s": 0.5,
            "s3": {"bucket": s3_bucket, "prefix": "turns", "region": "us-east-1", "endpoint_url": s3.endpoint_url},
            "spool": {"path": str(directory / "spool"), "retry_backoff_s": 1.0},
        },
        "deployments": {"caller_replicas": 2},
        "cache": {"enabled": False},
        "metrics": {"enabled": False},
    }
    path = directory / "router.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def one_turn(client: httpx.AsyncClient, url: str, request_id: str) -> dict:
    started = time.perf_counter()
    text, done, errored, ttft_s, status = "", False, False, None, None
    try:
        async with client.stream("POST", f"{url}/v1/chat/completions", headers={"x-request-id": request_id},
                                 json={"model": "chaos", "stream": True, "messages": [{"role": "user", "content": "count"}]}) as response:
            status = response.status_code
            async for line in response.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: {"):
                    chunk = json.loads(line[6:])
                    errored |= "error" in chunk
                    if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                        ttft_s = ttft_s or time.perf_counter() - started
                        text += chunk["choices"][0]["delta"]["content"]
    except httpx.ConnectError:
        return {"outcome": "port closed", "ttft_s": None}
    except httpx.HTTPError as exc:
        return {"outcome": f"transport: {type(exc).__name__}", "ttft_s": ttft_s}
    if status == 200 and done and not errored and text == WHOLE:
        outcome = "whole"
    elif status == 200 and done and errored and WHOLE.startswith(text):
        outcome = "clean error"
    elif status == 503:
        outcome = "refused"
    else:
        outcome = f"broken (status {status}, done {done})"
    return {"outcome": outcome, "ttft_s": ttft_s}


async def run_for(url: str, prefix: str, seconds: float, concurrency: int) -> tuple[list[str], list[dict]]:
    """Turns back to back on ``concurrency`` connections for ``seconds``."""
    ids: list[str] = []
    results: list[dict] = []
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=30) as client:
        async def worker(w: int) -> None:
            n = 0
            while time.monotonic() < deadline:
                request_id = f"{prefix}-{w}-{n}-{uuid.uuid4().hex[:6]}"
                n += 1
                ids.append(request_id)
                results.append({**await one_turn(client, url, request_id), "request_id": request_id})
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return ids, results


async def run_turns(url: str, request_ids: list[str], concurrency: int) -> list[dict]:
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=30) as client:
        async def one(request_id: str) -> dict:
            async with gate:
                return await one_turn(client, url, request_id)
        return await asyncio.gather(*(one(r) for r in request_ids))


def processes_titled(prefix: str, parent_tree_of: int) -> list[int]:
    """PIDs of this router's Ray processes whose title starts with ``prefix``
    (only descendants of the router we started, never anything else)."""
    import psutil

    root = psutil.Process(parent_tree_of)
    return [p.pid for p in root.children(recursive=True) if " ".join(p.cmdline()).startswith(prefix)]


def kill_after(delay_s: float, pids: list[int]) -> threading.Timer:
    timer = threading.Timer(delay_s, lambda: [os.kill(pid, signal.SIGKILL) for pid in pids[:1]])
    timer.start()
    return timer


def rows_for(turn_log: str, request_ids: set[str], wait_s: float = 20.0, s3=None) -> list[str]:
    from nemo_turnlog import read_turn_log

    deadline = time.monotonic() + wait_s
    rows: list[str] = []
    while time.monotonic() < deadline:
        table = read_turn_log(turn_log, endpoint_url=s3.endpoint_url, region="us-east-1")
        rows = [r for r in table.column("request_id").to_pylist() if r in request_ids]
        if len(set(rows)) == len(request_ids):
            break
        time.sleep(0.5)
    return rows


def summary(name: str, results: list[dict], rows: list[str], extra: dict) -> dict:
    ttfts = sorted(r["ttft_s"] for r in results if r["ttft_s"] is not None)
    outcomes = [r["outcome"] for r in results]
    refused = outcomes.count("refused") + outcomes.count("port closed")
    return {
        "scenario": name,
        "sent": len(results),
        "whole": outcomes.count("whole"),
        "clean_error": outcomes.count("clean error"),
        "refused": refused,
        "failed": len(results) - outcomes.count("whole") - outcomes.count("clean error") - refused,
        "rows_logged": len(set(rows)),
        "duplicate_rows": len(rows) - len(set(rows)),
        "ttft_p50_ms": round(1000 * statistics.median(ttfts), 1) if ttfts else None,
        "ttft_p99_ms": round(1000 * ttfts[max(0, int(0.99 * len(ttfts)) - 1)], 1) if ttfts else None,
        "failures": dict(Counter(o for o in outcomes if o not in ("whole", "clean error", "refused", "port closed"))),
        **extra,
    }


def s3_down(url: str, s3, turn_log: str, concurrency: int) -> dict:
    """30 s of turns; the turn log's S3 down from the 5th to the 25th second."""
    outage = threading.Timer(5.0, s3.stop)
    back = threading.Timer(25.0, s3.start)
    outage.start(), back.start()
    ids, results = asyncio.run(run_for(url, "s3-down", 30.0, concurrency))
    outage.join(), back.join()
    served = {r["request_id"] for r in results if r["outcome"] in ("whole", "clean error")}
    return summary("s3-down", results, rows_for(turn_log, served, wait_s=60.0, s3=s3), {"s3_down_s": 20})


def stop_in_flight(url: str, process, s3, turn_log: str, concurrency: int) -> dict:
    """Turns on every connection; SIGTERM to the router two seconds in."""
    def stop() -> None:
        stop.at = time.monotonic()
        process.send_signal(signal.SIGTERM)

    timer = threading.Timer(2.0, stop)
    timer.start()
    ids, results = asyncio.run(run_for(url, "stop", 8.0, concurrency))
    timer.join()
    process.wait(timeout=60)
    stop_s = round(time.monotonic() - stop.at, 1)
    served = {r["request_id"] for r in results if r["outcome"] in ("whole", "clean error")}
    return summary("stop-in-flight", results, rows_for(turn_log, served, s3=s3), {"router_exited_after_s": stop_s})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--port", type=int, default=None, help="the router's port (default: a free one); Serve's derive from it")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=SCENARIOS, help="run these scenarios only")
    args = parser.parse_args()
    from nemo_turnlog.testing import AWS_ENV_TO_CLEAR, FAKE_AWS_ENV, LocalS3Server

    # moto's S3 takes any credentials; fake ones, so nothing here (nor the
    # router's workers, which inherit them) can reach a real account.
    for name in AWS_ENV_TO_CLEAR:
        os.environ.pop(name, None)
    os.environ.update(FAKE_AWS_ENV)
    rows_out = []
    with tempfile.TemporaryDirectory() as tmp, start_simulator({n: HEALTHY for n in ENDPOINTS}) as sim, LocalS3Server() as s3:
        directory = Path(tmp)
        port = args.port or free_port()
        url = f"http://127.0.0.1:{port}"
        assert_loopback(url)
        bucket = s3.new_bucket()
        turn_log = f"s3://{bucket}/turns"
        process = start_router(router_config(directory, sim, port, s3, bucket), "fast", port, directory / "router.log")
        try:
            if "faults" in args.only:
                ids = [f"faults-{i}-{uuid.uuid4().hex[:6]}" for i in range(args.turns)]
                with ChaosMonkey(sim, ENDPOINTS[:2], HEALTHY, seed=11) as monkey:
                    results = asyncio.run(run_turns(url, ids, args.concurrency))
                rows_out.append(summary("faults", results, rows_for(turn_log, set(ids), s3=s3), {"faults_applied": dict(monkey.flips)}))
                print(rows_out[-1], flush=True)
            for name, title in (("caller-killed", "ray::ServeReplica:nemo-router:ProviderCaller"),
                                ("tracker-killed", "ray::LatencyTracker")):
                if name not in args.only:
                    continue
                ids = [f"{name}-{i}-{uuid.uuid4().hex[:6]}" for i in range(max(1, args.turns * 3 // 4))]
                pids = processes_titled(title, process.pid)
                timer = kill_after(1.0, pids)
                results = asyncio.run(run_turns(url, ids, args.concurrency))
                timer.join()
                rows_out.append(summary(name, results, rows_for(turn_log, set(ids), s3=s3), {"killed_pid": pids[:1]}))
                print(rows_out[-1], flush=True)
            if "s3-down" in args.only:
                rows_out.append(s3_down(url, s3, turn_log, args.concurrency))
                print(rows_out[-1], flush=True)
            if "stop-in-flight" in args.only:
                rows_out.append(stop_in_flight(url, process, s3, turn_log, args.concurrency))
                print(rows_out[-1], flush=True)
        finally:
            stop_router(process)
    header = "| scenario | sent | whole | clean SSE error | refused (503 / port closed) | failed | rows logged | duplicate rows | TTFT p50 ms | TTFT p99 ms |"
    lines = [header, "|" + "---|" * 10]
    lines += [f"| {r['scenario']} | {r['sent']} | {r['whole']} | {r['clean_error']} | {r['refused']} | {r['failed']} | {r['rows_logged']} | "
              f"{r['duplicate_rows']} | {r['ttft_p50_ms']} | {r['ttft_p99_ms']} |" for r in rows_out]
    text = "\n".join(lines)
    print(text)
    name = "chaos" if args.only == SCENARIOS else "chaos-" + "-".join(args.only)
    save_results(name, {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "rows": rows_out}, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
