"""Memory over a soak: does the router's resident memory stay flat under
steady streaming load?

Starts a simulated provider (TTFT 50 ms, 20 tokens 5 ms apart) and the router
(fast serve mode, local turn log, cache off) in its own process, then sends
streaming turns at ``--concurrency`` back to back for ``--minutes``. Every
``--sample-s`` it reads the RSS and USS of the router's whole process tree
(``nemo-router run`` and every descendant: GCS, raylet, HAProxy, one Ray
worker per replica or actor; see procstats.py), by component, and the
turns done in the interval.

Flat means: the median tree RSS over the last ``--window-s`` is within
``--max-growth`` (either way) of the median over the first ``--window-s``
after ``--warmup-s`` (start-up allocation, imports and first-use caches are
not a leak). Also reported per component, with a least-squares slope in
MB/min over everything after the warm-up. Prints tables and PASS/FAIL, and
saves JSON (every sample) and Markdown under benchmarks/results/.

    python benchmarks/soak.py [--minutes 10] [--concurrency 20] [--sample-s 15]
                              [--warmup-s 60] [--window-s 120] [--out soak]

Takes about ``--minutes`` plus 1-2 minutes to start and stop the router.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import TURN_TIMEOUT_S, LoadResult, assert_loopback, chat_body, load_session, one_turn, summarize  # noqa: E402
from overhead import free_port, start_router, stop_router, write_config  # noqa: E402
from procstats import memory_mb, sample_tree  # noqa: E402

from simprovider import start_simulator  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PROVIDER = {"ttft_ms": 50, "token_interval_ms": 5, "tokens": 20}
# Components shown per sample; every component is in the summary and the JSON.
SAMPLE_COLUMNS = ("caller", "ingress", "tracker", "haproxy", "driver", "raylet", "gcs")


async def _drive(url: str, model: str, concurrency: int, stop_at: float, result: LoadResult) -> None:
    """``concurrency`` workers, each sending turns back to back until ``stop_at``."""
    body = chat_body(model)
    async with load_session(concurrency) as session:

        async def worker() -> None:
            while time.monotonic() < stop_at:
                await one_turn(session, url, body, result)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def soak(base_url: str, router_pid: int, args: argparse.Namespace) -> tuple[list[dict], LoadResult]:
    """Drive the load and sample the tree; the samples, and every turn."""
    assert_loopback(base_url)
    url = base_url.rstrip("/") + "/chat/completions"
    result = LoadResult()
    start = time.monotonic()
    stop_at = start + args.minutes * 60
    load = asyncio.create_task(_drive(url, "bench", args.concurrency, stop_at, result))
    samples: list[dict] = []
    seen = (start, 0, 0)  # time, turns ok, errors at the previous sample
    while True:
        # In a thread: reading smaps of ~20 processes must not stall the load.
        memory = memory_mb(await asyncio.to_thread(sample_tree, router_pid, uss=True))
        now, ok, errors = time.monotonic(), len(result.ttft_s), result.errors
        interval_s = max(now - seen[0], 1e-9)
        ttfts = result.ttft_s[seen[1]:ok]
        samples.append({
            "t_s": round(now - start, 1),
            "turns_per_s": (ok - seen[1]) / interval_s,
            "errors": errors - seen[2],
            "ttft_p50_ms": 1000 * statistics.median(ttfts) if ttfts else None,
            **memory,
        })
        print(_sample_row(samples[-1]), flush=True)
        seen = (now, ok, errors)
        if now >= stop_at:
            break
        next_at = start + len(samples) * args.sample_s
        await asyncio.sleep(max(0.0, min(next_at, stop_at) - time.monotonic()))
    # Turns in flight at the deadline finish (each is bounded by its timeout).
    await asyncio.wait_for(load, timeout=TURN_TIMEOUT_S + 10)
    result.wall_s = time.monotonic() - start
    return samples, result


def _slope_mb_per_min(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 2:
        return None
    return statistics.linear_regression([t / 60 for t, _ in points], [mb for _, mb in points]).slope


def _growth(samples: list[dict], read, warmup_s: float, window_s: float) -> dict:
    """Median of the first window after the warm-up vs the last window, and
    the slope over everything after the warm-up, of ``read(sample)`` MB."""
    after = [s for s in samples if s["t_s"] >= warmup_s]
    end_s = samples[-1]["t_s"]
    early = [read(s) for s in after if s["t_s"] < warmup_s + window_s]
    late = [read(s) for s in after if s["t_s"] >= end_s - window_s]
    early_mb, late_mb = statistics.median(early), statistics.median(late)
    return {
        "early_mb": early_mb,
        "late_mb": late_mb,
        "growth": late_mb / early_mb - 1 if early_mb else None,
        "slope_mb_per_min": _slope_mb_per_min([(s["t_s"], read(s)) for s in after]),
    }


def flatness(samples: list[dict], warmup_s: float, window_s: float, max_growth: float) -> dict:
    labels = {label for s in samples for label in s["by_label"]}
    by_label = {
        label: _growth(samples, lambda s, label=label: s["by_label"].get(label, {}).get("rss_mb", 0.0), warmup_s, window_s)
        for label in labels
    }
    rss = _growth(samples, lambda s: s["rss_mb"], warmup_s, window_s)
    return {
        "rss": rss,
        "uss": _growth(samples, lambda s: s["uss_mb"], warmup_s, window_s),
        "by_label": dict(sorted(by_label.items(), key=lambda item: -item[1]["late_mb"])),
        "max_growth": max_growth,
        "passed": abs(rss["growth"]) <= max_growth,
    }


def _mb(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _sample_row(s: dict) -> str:
    parts = [f"{s['t_s']:.0f}", f"{s['turns_per_s']:.1f}", str(s["errors"]), _mb(s["ttft_p50_ms"]), str(s["processes"])]
    parts += [_mb(s["rss_mb"]), _mb(s["uss_mb"])]
    parts += [_mb(s["by_label"].get(label, {}).get("rss_mb")) for label in SAMPLE_COLUMNS]
    return "| " + " | ".join(parts) + " |"


def sample_table(samples: list[dict]) -> str:
    header = ["t s", "turns/s", "errors", "TTFT p50 ms", "procs", "tree RSS MB", "tree USS MB"]
    header += [f"{label} RSS MB" for label in SAMPLE_COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + [_sample_row(s) for s in samples])


def _growth_row(name: str, g: dict) -> str:
    growth = "" if g["growth"] is None else f"{100 * g['growth']:+.1f}%"
    slope = "" if g["slope_mb_per_min"] is None else f"{g['slope_mb_per_min']:+.2f}"
    return f"| {name} | {g['early_mb']:.1f} | {g['late_mb']:.1f} | {growth} | {slope} |"


def growth_table(flat: dict) -> str:
    lines = ["| what | first window MB | last window MB | growth | slope MB/min |", "|---|---|---|---|---|"]
    lines += [_growth_row("tree RSS", flat["rss"]), _growth_row("tree USS", flat["uss"])]
    lines += [_growth_row(f"{label} RSS", g) for label, g in flat["by_label"].items()]
    return "\n".join(lines)


def verdict(flat: dict, args: argparse.Namespace) -> str:
    growth = flat["rss"]["growth"]
    word = "PASS" if flat["passed"] else "FAIL"
    return (
        f"{word}: tree RSS {100 * growth:+.1f}% (median of the last {args.window_s:.0f} s vs the first "
        f"{args.window_s:.0f} s after a {args.warmup_s:.0f} s warm-up; target within {100 * args.max_growth:.0f}%) "
        f"over a {args.minutes:g}-minute soak at concurrency {args.concurrency}"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--sample-s", type=float, default=15)
    parser.add_argument("--warmup-s", type=float, default=60, help="left out of the flatness comparison")
    parser.add_argument("--window-s", type=float, default=120, help="length of the first and last windows compared")
    parser.add_argument("--max-growth", type=float, default=0.10, help="allowed change of tree RSS, as a fraction")
    parser.add_argument("--out", default="soak", help="results file name under benchmarks/results/")
    args = parser.parse_args()
    if args.warmup_s + 2 * args.window_s > args.minutes * 60:
        parser.error("--warmup-s plus two --window-s must fit in --minutes (the windows must not overlap)")
    if args.window_s < 2 * args.sample_s:
        parser.error("--window-s must hold at least two samples (--sample-s)")
    return args


def main() -> int:
    args = parse_args()
    # SIGTERM ends the run like Ctrl-C, so the router and simulator are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with tempfile.TemporaryDirectory() as tmp, start_simulator({"bench": PROVIDER}) as sim:
        port = free_port()
        config_path = write_config(Path(tmp), sim.base_url("bench"), port)
        print("starting the router (fast mode) ...", flush=True)
        router = start_router(config_path, "fast", port, Path(tmp) / "router.log")
        try:
            print(f"soaking for {args.minutes:g} min at concurrency {args.concurrency}", flush=True)
            print(sample_table([]), flush=True)
            samples, result = asyncio.run(soak(f"http://127.0.0.1:{port}/v1", router.pid, args))
        finally:
            stop_router(router)
    flat = flatness(samples, args.warmup_s, args.window_s, args.max_growth)
    report = {
        "benchmark": "soak",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "provider": PROVIDER,
        "settings": {k: getattr(args, k) for k in ("minutes", "concurrency", "sample_s", "warmup_s", "window_s", "max_growth")},
        "load": summarize(result),
        "flatness": flat,
        "samples": samples,
    }
    load = report["load"]
    summary = (
        f"{verdict(flat, args)}\n\n{load['turns_ok']} turns ({load['turns_per_s']:.1f}/s), {load['errors']} errors, "
        f"TTFT p50 {load['ttft_p50_ms']:.1f} ms, p99 {load['ttft_p99_ms']:.1f} ms."
    )
    text = f"{growth_table(flat)}\n\n{summary}"
    print(f"\n{text}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(report, indent=2))
    (RESULTS / f"{args.out}.md").write_text(
        f"Measured {report['when']} on {os.cpu_count()} cores.\n\n{text}\n\nSamples:\n\n{sample_table(samples)}\n"
    )
    return 0 if flat["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
