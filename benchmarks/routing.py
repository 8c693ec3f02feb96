"""Routing on live signal: which endpoint each strategy picks, and the TTFT
the client sees, when the fastest endpoint turns slow half way through.

Three simulated endpoints, A (TTFT 40 ms), B (120 ms) and C (250 ms), each
streaming 10 tokens 5 ms apart. For each strategy, ``--turns`` streaming
turns at ``--concurrency``; once turn ``turns / 2`` has been started, A is
set to 400 ms through the simulator's admin API, and no later turn starts
before that call has returned. One router process serves every strategy:
one model group per strategy, each with its own three endpoint names (the
router keeps signal per endpoint name) pointing at the same three simulator
profiles. The oracle always picks the currently fastest endpoint, through
the router too so it pays the same overhead: an ``ordered`` group with A
first for the first half, one with B first for the second. Between
strategies A is reset to 40 ms and the router rests a few seconds.

    python benchmarks/routing.py [--turns 300] [--concurrency 4]

Prints a table and PASS/FAIL for the latency-based targets of issue 3, and
saves JSON (with every turn) and Markdown under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import free_port, start_router, stop_router  # noqa: E402

from simprovider import SimulatorProcess, start_simulator  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
HOST = "127.0.0.1"  # turns only ever go to loopback
LETTERS = ("A", "B", "C")
PROFILES = {
    letter: {"ttft_ms": ttft_ms, "token_interval_ms": 5, "tokens": 10}
    for letter, ttft_ms in zip(LETTERS, (40, 120, 250))
}
SLOW_A_TTFT_MS = 400
STRATEGIES = ("latency-based", "least-busy", "weighted-shuffle")
ORACLE_GROUPS = {"oracle-a-first": ("A", "B", "C"), "oracle-b-first": ("B", "C", "A")}
WARMUP_GROUP, WARMUP_TURNS = "warmup", 20
REST_S = 6.0
RUN_TIMEOUT_S = 600.0
TURN_TIMEOUT_S = 30.0
TARGETS = {"p50": 1.10, "p90": 1.25, "a_after_slowdown": 8}

_CONTENT = re.compile(rb'"content":\s*"[^"]')


def _group(name: str, strategy: str, order: tuple[str, ...], sim: SimulatorProcess) -> dict:
    endpoints = [{"name": f"{name}/{x}", "base_url": sim.base_url(x.lower()), "model": "sim-model"} for x in order]
    return {"strategy": strategy, "endpoints": endpoints}


def write_config(directory: Path, sim: SimulatorProcess, port: int) -> Path:
    groups = {name: _group(name, name, LETTERS, sim) for name in STRATEGIES}
    groups |= {name: _group(name, "ordered", order, sim) for name, order in ORACLE_GROUPS.items()}
    groups[WARMUP_GROUP] = _group(WARMUP_GROUP, "ordered", ("A",), sim)
    config = {
        "server": {"port": port},
        "model_groups": groups,
        "turn_log": {"sink": "local", "path": str(directory / "turnlog")},
        "cache": {"enabled": False},  # identical turns: measure routing, not the cache
    }
    path = directory / "router.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass
class Turn:
    """One turn, numbered by start order from 1; times in ms from the run's
    start (``started_ms``) or the turn's (``ttft_ms``, ``total_ms``)."""

    index: int
    model: str
    started_ms: float
    ttft_ms: float | None = None
    total_ms: float | None = None
    endpoint: str | None = None
    error: str | None = None

    @property
    def letter(self) -> str | None:
        return self.endpoint.rsplit("/", 1)[-1] if self.endpoint else None


async def _stream(client: httpx.AsyncClient, url: str, turn: Turn) -> None:
    start = time.perf_counter()
    body = {"model": turn.model, "messages": [{"role": "user", "content": "hello there"}], "stream": True}
    async with client.stream("POST", url, json=body) as response:
        turn.endpoint = response.headers.get("x-nemo-endpoint")
        if response.status_code != 200:
            await response.aread()
            turn.error = f"http {response.status_code}"
            return
        tail = b""
        async for raw in response.aiter_raw():
            if turn.ttft_ms is None and _CONTENT.search(tail + raw):
                turn.ttft_ms = 1000 * (time.perf_counter() - start)
            tail = (tail + raw)[-64:]
    turn.total_ms = 1000 * (time.perf_counter() - start)
    if turn.ttft_ms is None or not tail.rstrip().endswith(b"[DONE]"):
        turn.error = "no content" if turn.ttft_ms is None else "no [DONE]"


async def _one_turn(client: httpx.AsyncClient, url: str, turn: Turn) -> None:
    try:
        await _stream(client, url, turn)
    except httpx.HTTPError as exc:
        turn.error = type(exc).__name__


async def run_scenario(port: int, sim: SimulatorProcess, model_for, turns: int, concurrency: int) -> tuple[list[Turn], float]:
    """Closed loop: ``concurrency`` workers start turns 1..``turns`` in order.
    The worker that claims the first turn of the second half slows A and
    holds the later ones until it has. Returns the turns (by index) and when
    the slowdown took effect, in ms from the start."""
    url = f"http://{HOST}:{port}/v1/chat/completions"
    half, claimed, done = turns // 2, 0, []
    slowed = asyncio.Event()
    slowed_at_ms = float("nan")
    start = time.perf_counter()

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal claimed, slowed_at_ms
        while claimed < turns:
            claimed += 1
            index = claimed
            if index == half + 1:
                await asyncio.to_thread(sim.set_behavior, "a", ttft_ms=SLOW_A_TTFT_MS)
                slowed_at_ms = 1000 * (time.perf_counter() - start)
                slowed.set()
            elif index > half:
                await slowed.wait()
            turn = Turn(index, model_for(index), 1000 * (time.perf_counter() - start))
            await _one_turn(client, url, turn)
            done.append(turn)

    limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2)
    async with httpx.AsyncClient(timeout=TURN_TIMEOUT_S, limits=limits) as client:
        await asyncio.wait_for(asyncio.gather(*(worker(client) for _ in range(concurrency))), RUN_TIMEOUT_S)
    return sorted(done, key=lambda t: t.index), slowed_at_ms


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summarize_half(turns: list[Turn]) -> dict:
    routed = [t.letter for t in turns if t.letter]
    ttfts = [t.ttft_ms for t in turns if t.error is None]
    return {
        "turns": len(turns),
        "errors": sum(t.error is not None for t in turns),
        "share": {x: routed.count(x) / len(routed) if routed else None for x in LETTERS},
        "count": {x: routed.count(x) for x in LETTERS},
        **{f"ttft_p{int(q * 100)}_ms": _percentile(ttfts, q) for q in (0.5, 0.9, 0.99)},
    }


def summarize(turns: list[Turn], slowed_at_ms: float) -> dict:
    half = len(turns) // 2
    late_a = [t for t in turns[half:] if t.letter == "A"]
    return {
        "first_half": summarize_half(turns[:half]),
        "second_half": summarize_half(turns[half:]),
        "a_after_slowdown": len(late_a),
        "a_after_slowdown_started_ms": [round(t.started_ms - slowed_at_ms, 1) for t in late_a],
        "slowed_at_ms": round(slowed_at_ms, 1),
    }


def check_targets(results: dict) -> list[dict]:
    """The latency-based targets of issue 3, each with the measured ratio."""
    latency, oracle, checks = results["latency-based"], results["oracle"], []
    for half in ("first_half", "second_half"):
        for p in ("p50", "p90"):
            ours, best = latency[half][f"ttft_{p}_ms"], oracle[half][f"ttft_{p}_ms"]
            ratio = round(ours / best, 3) if ours and best else None
            passed = ratio is not None and ratio <= TARGETS[p]
            checks.append({"target": f"{half} TTFT {p} <= {TARGETS[p]}x oracle", "value": ratio, "pass": passed})
    a_late, limit = latency["a_after_slowdown"], TARGETS["a_after_slowdown"]
    checks.append({"target": f"turns to A after slowdown <= {limit}", "value": a_late, "pass": a_late <= limit})
    return checks


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(results: dict) -> str:
    header = "| strategy | half | turns | errors | A | B | C | TTFT p50 ms | TTFT p90 ms | TTFT p99 ms | to A after slowdown |"
    lines = [header, "|" + "---|" * 11]
    for name, summary in results.items():
        for half, label in (("first_half", "1st"), ("second_half", "2nd")):
            s = summary[half]
            shares = " | ".join("-" if s["share"][x] is None else f"{100 * s['share'][x]:.0f}%" for x in LETTERS)
            late = str(summary["a_after_slowdown"]) if half == "second_half" else ""
            ttfts = " | ".join(_ms(s[f"ttft_p{q}_ms"]) for q in (50, 90, 99))
            lines.append(f"| {name} | {label} | {s['turns']} | {s['errors']} | {shares} | {ttfts} | {late} |")
    return "\n".join(lines)


def checks_text(checks: list[dict]) -> str:
    return "\n".join(f"- {'PASS' if c['pass'] else 'FAIL'}: latency-based {c['target']} (measured {c['value']})" for c in checks)


async def _measure_all(port: int, sim: SimulatorProcess, turns: int, concurrency: int) -> tuple[dict, dict]:
    runs = {name: (lambda i, name=name: name) for name in STRATEGIES}
    oracle_first, oracle_second = ORACLE_GROUPS
    runs["oracle"] = lambda i: oracle_first if i <= turns // 2 else oracle_second
    warmup = await run_scenario(port, sim, lambda i: WARMUP_GROUP, WARMUP_TURNS, 1)
    results, raw = {}, {"warmup_errors": sum(t.error is not None for t in warmup[0])}
    for name, model_for in runs.items():
        await asyncio.to_thread(sim.set_behavior, "a", ttft_ms=PROFILES["A"]["ttft_ms"])
        await asyncio.sleep(REST_S)
        print(f"{name}: {turns} turns at concurrency {concurrency} ...", flush=True)
        turns_done, slowed_at_ms = await run_scenario(port, sim, model_for, turns, concurrency)
        results[name] = summarize(turns_done, slowed_at_ms)
        raw[name] = {"turns": [asdict(t) for t in turns_done], "routing_state": _routing_state(port, name)}
    return results, raw


def _routing_state(port: int, group: str) -> dict:
    """The tracker's view of this group's endpoints right after its run."""
    try:
        endpoints = httpx.get(f"http://{HOST}:{port}/v1/routing", timeout=10).json()["endpoints"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return {"unavailable": type(exc).__name__}
    prefix = f"{group}/" if group != "oracle" else "oracle-"
    return {name: state for name, state in endpoints.items() if name.startswith(prefix)} if isinstance(endpoints, dict) else endpoints


def _print_log_tail(log_path: Path, lines: int = 40) -> None:
    if log_path.exists():
        print("".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-lines:]), file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=300, help="turns per strategy (default 300); A slows after half")
    parser.add_argument("--concurrency", type=int, default=4, help="turns in flight at once (default 4)")
    args = parser.parse_args()
    if args.turns < 2 or args.concurrency < 1:
        parser.error("need --turns >= 2 and --concurrency >= 1")
    profiles = {x.lower(): fields for x, fields in PROFILES.items()}
    with tempfile.TemporaryDirectory() as tmp, start_simulator(profiles) as sim:
        port, log_path = free_port(), Path(tmp) / "router.log"
        print("starting the router ...", flush=True)
        try:
            router = start_router(write_config(Path(tmp), sim, port), "fast", port, log_path)
        except RuntimeError:
            _print_log_tail(log_path)
            raise
        try:
            results, raw = asyncio.run(_measure_all(port, sim, args.turns, args.concurrency))
        finally:
            stop_router(router)
    checks = check_targets(results)
    report = {
        "benchmark": "routing",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "scenario": {
            "turns": args.turns,
            "concurrency": args.concurrency,
            "profiles": PROFILES,
            "slow_a_ttft_ms": SLOW_A_TTFT_MS,
            "serve_mode": "fast",
        },
        "results": results,
        "targets": checks,
        "raw": raw,
    }
    text, verdicts = table(results), checks_text(checks)
    print(f"{text}\n\n{verdicts}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "routing.json").write_text(json.dumps(report, indent=2))
    header = (
        f"Measured {report['when']} on {os.cpu_count()} cores: {args.turns} turns per strategy at concurrency "
        f"{args.concurrency}; A slows from 40 to {SLOW_A_TTFT_MS} ms TTFT once turn {args.turns // 2} has started."
    )
    (RESULTS / "routing.md").write_text(f"{header}\n\n{text}\n\n{verdicts}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
