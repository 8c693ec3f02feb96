"""Failover under scripted upstream failures: nemo-router and LiteLLM proxy,
each with its own failover mechanisms, on the same scenarios in one run.

Simulated endpoints stream the words "w1 w2 ... w20" (TTFT 50 ms, 5 ms
apart) unless a scenario says otherwise:

1. A answers 503, B hangs before its first token, C is healthy.
   Target: every turn succeeds.
2. A drops the connection after 5 tokens; B and C are healthy.
   Target: every turn arrives whole and gap-free (exactly w1 ... w20, [DONE]).
3. T has a heavy TTFT tail (10% of requests 1500 ms instead of 50 ms, a
   seeded draw, so every run sees the same sequence), H is healthy (80 ms).
   nemo-router with hedging off and on; LiteLLM, which has no hedging, as
   the baseline. Reports how much p99 TTFT the hedge saves.

Both gateways get the same chain in the same order (A -> B -> C, T -> H):
nemo-router as one model group per endpoint chained by ``fallbacks:``,
LiteLLM as one model per endpoint chained by its ``fallbacks`` setting; the
same 1 s first-token deadline, at most 3 attempts per turn, and an
equivalent breaker / cooldown (ROUTER_GROUP, HEDGE, LITELLM_SETTINGS below;
SETTINGS_NOTES says why, and goes into the saved report).
Every run gets a fresh gateway process, so breakers and cooldowns never
carry over; the simulator is shared and reset between runs. Loopback only.

    python benchmarks/failover.py [--scenarios 1,2,3] [--turns 200] [--concurrency 4]
                                  [--no-hedge] [--no-litellm] [--out failover]

Prints a table with PASS/FAIL per target and saves JSON (with every turn)
and Markdown under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from litellm_proxy import litellm_proxy, openai_deployment  # noqa: E402
from overhead import free_port, start_router, stop_router  # noqa: E402

from simprovider import SimulatorProcess, start_simulator  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
HOST = "127.0.0.1"  # turns only ever go to loopback
WORDS = 20
WHOLE_TEXT = " ".join(f"w{i}" for i in range(1, WORDS + 1))
HEALTHY = {"ttft_ms": 50, "token_interval_ms": 5, "tokens": WORDS}
PROFILES = {name: HEALTHY for name in ("a", "b", "c", "t", "warmup")} | {"h": {**HEALTHY, "ttft_ms": 80}}
TAIL = {"ttft_tail_ms": 1500, "ttft_tail_share": 0.1, "seed": 3}  # seed 3: 20 tail requests in the first 200
WARMUP_TURNS = 5
TURN_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 900.0

FIRST_TOKEN_S = 1.0
MAX_ATTEMPTS = 3
ROUTER_GROUP = {
    "strategy": "ordered",
    "max_attempts": MAX_ATTEMPTS,
    "timeouts": {"connect_s": 1.0, "first_token_s": FIRST_TOKEN_S, "stall_s": 1.0, "total_s": 10.0},
    "breaker": {"consecutive_failures": 3, "cooldown_s": 5.0, "max_cooldown_s": 60.0},
    "midstream": "continue",
}
HEDGE = {"delay_s": 0.2, "max_share": 0.2}
LITELLM_SETTINGS = {
    "num_retries": 0,  # no retry on the same model: each fallback is the next attempt
    "stream_timeout": FIRST_TOKEN_S,  # LiteLLM reads the first chunk before answering: a first-token deadline
    "timeout": 10.0,
    "allowed_fails": 2,  # cooled down on the 3rd failure (within cooldown_time), like 3 consecutive
    # Without a policy naming the exception type, LiteLLM never cools down a
    # model that has one deployment and no fallbacks of its own (B, C, H here).
    "allowed_fails_policy": {
        f"{kind}ErrorAllowedFails": 2 for kind in ("Timeout", "ServiceUnavailable", "InternalServer", "BadGateway", "RateLimit")
    },
    "cooldown_time": 5.0,
}
SETTINGS_NOTES = [
    "Both gateways: one model (group) per endpoint, chained in failover order (A -> B -> C, T -> H). The issue frames "
    "it as a chain, and it is the one shape both express alike (nemo-router `fallbacks:`, LiteLLM `fallbacks`), so "
    "both try the same endpoints in the same order; one group of three would compare load balancers, not failover.",
    f"nemo-router, every group: {json.dumps(ROUTER_GROUP)}. Hedging on (scenario 3): `hedge: {json.dumps(HEDGE)}` on "
    "the first group: a fixed delay, since with a 10% tail the p95 that `delay_s: null` would use lies inside the tail; "
    "max_share above the tail share, so the budget does not cap it.",
    f"LiteLLM `router_settings`: {json.dumps(LITELLM_SETTINGS)} and `fallbacks: [{{first: [rest]}}]` (2 fallbacks, "
    "no retries: 3 attempts). `stream_timeout` is a first-token deadline because LiteLLM reads the first chunk before "
    "answering. Its cooldown counts failures per `cooldown_time` window (not consecutive ones) and does not grow; "
    "`allowed_fails_policy` names the upstream faults because LiteLLM otherwise never cools down a model with one "
    "deployment and no fallbacks of its own (B, C, H). It falls back only before the first chunk (no mid-stream "
    "continuation) and has no hedging.",
    f"Scenario 3: the 1500 ms tail is past the {FIRST_TOKEN_S:g} s first-token deadline, so without a hedge a tail "
    "turn is abandoned at the deadline and served by H.",
]


@dataclass(frozen=True)
class Scenario:
    """One failure script: the chain in failover order, the behaviours its
    endpoints follow during the measured turns, and the share that must be 100%."""

    key: str
    title: str
    chain: tuple[str, ...]
    behaviors: dict[str, dict]
    target: str  # "success" or "whole"


SCENARIOS = {
    "1": Scenario("1", "A 503, B hangs, C healthy", ("a", "b", "c"), {"a": {"failure": "http_503"}, "b": {"failure": "hang"}}, "success"),
    "2": Scenario("2", "A drops after 5 tokens, B and C healthy", ("a", "b", "c"), {"a": {"failure": "drop_after", "drop_after_tokens": 5}}, "whole"),
    "3": Scenario("3", "T: 10% of TTFTs 1500 ms instead of 50, H healthy (80 ms)", ("t", "h"), {"t": TAIL}, "success"),
}


@dataclass(frozen=True)
class Gateway:
    name: str
    base_url: str
    headers: dict[str, str]
    config: dict


# --- the two gateways, configured for one scenario --------------------------


def router_config(scenario: Scenario, sim: SimulatorProcess, port: int, directory: Path, hedge: bool) -> dict:
    first, *rest = scenario.chain
    # Deep copies: yaml would write one shared dict as an anchor and aliases.
    groups = {name: copy.deepcopy(ROUTER_GROUP) | {"endpoints": [_endpoint(name, sim)]} for name in (*scenario.chain, "warmup")}
    groups[first]["fallbacks"] = rest
    if hedge:
        groups[first]["hedge"] = HEDGE
    return {
        "server": {"port": port},
        "model_groups": groups,
        "turn_log": {"sink": "local", "path": str(directory / "turnlog")},
        "cache": {"enabled": False},  # identical turns: measure failover, not the cache
    }


def _endpoint(name: str, sim: SimulatorProcess) -> dict:
    return {"name": name, "base_url": sim.base_url(name), "model": "sim-model"}


@contextlib.contextmanager
def router_gateway(scenario: Scenario, sim: SimulatorProcess, directory: Path, hedge: bool, serve_mode: str) -> Iterator[Gateway]:
    port = free_port()
    config = router_config(scenario, sim, port, directory, hedge)
    path = directory / f"router-{scenario.key}{'-hedge' if hedge else ''}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    log_path = path.with_suffix(".log")
    try:
        process = start_router(path, serve_mode, port, log_path)
    except RuntimeError:
        _print_log_tail(log_path)
        raise
    try:
        name = "nemo-router" + ((" hedge on" if hedge else " hedge off") if scenario.key == "3" else "")
        yield Gateway(name, f"http://{HOST}:{port}/v1", {}, config)
    finally:
        stop_router(process)


@contextlib.contextmanager
def litellm_gateway(scenario: Scenario, sim: SimulatorProcess, directory: Path) -> Iterator[Gateway]:
    first, *rest = scenario.chain
    model_list = [openai_deployment(name, sim.base_url(name)) for name in (*scenario.chain, "warmup")]
    router_settings = {**LITELLM_SETTINGS, "fallbacks": [{first: rest}]}
    log_path = directory / f"litellm-{scenario.key}.log"
    try:
        with litellm_proxy(model_list, port=free_port(), log_path=log_path, router_settings=router_settings) as proxy:
            config = {"model_list": model_list, "router_settings": router_settings, "litellm_version": proxy.version}
            yield Gateway(f"LiteLLM {proxy.version}", proxy.base_url, proxy.headers, config)
    except RuntimeError:
        _print_log_tail(log_path)
        raise


def _print_log_tail(log_path: Path, lines: int = 40) -> None:
    if log_path.exists():
        print("".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-lines:]), file=sys.stderr)


# --- turns --------------------------------------------------------------------


@dataclass
class Turn:
    """One streamed turn, numbered by start order from 1. ``error`` says why
    it failed (None: HTTP 200, content, no error event, ``[DONE]``); ``whole``:
    it succeeded and its text is exactly "w1 w2 ... w20"."""

    index: int
    ttft_ms: float | None = None
    total_ms: float | None = None
    served_by: str | None = None
    error: str | None = None
    text: str = ""
    done: bool = False

    @property
    def whole(self) -> bool:
        return self.error is None and self.text == WHOLE_TEXT


async def _stream(client: httpx.AsyncClient, url: str, model: str, turn: Turn) -> None:
    start = time.perf_counter()
    body = {"model": model, "messages": [{"role": "user", "content": "hello there"}], "stream": True}
    async with client.stream("POST", url, json=body) as response:
        headers = response.headers
        turn.served_by = headers.get("x-nemo-endpoint") or headers.get("x-litellm-model-group")
        if response.status_code != 200:
            await response.aread()
            turn.error = f"http {response.status_code}"
            return
        async for line in response.aiter_lines():
            _read_event(line, turn, start)
    turn.total_ms = 1000 * (time.perf_counter() - start)
    if turn.error is None and (turn.ttft_ms is None or not turn.done):
        turn.error = "no content" if turn.ttft_ms is None else "no [DONE]"


def _read_event(line: str, turn: Turn, start: float) -> None:
    if not line.startswith("data:"):
        return
    data = line[len("data:"):].strip()
    if data == "[DONE]":
        turn.done = True
        return
    try:
        event = json.loads(data)
    except ValueError:
        turn.error = turn.error or "event not JSON"
        return
    if "error" in event:
        turn.error = turn.error or "error event"
        return
    for choice in event.get("choices") or []:
        content = (choice.get("delta") or {}).get("content")
        if content:
            if turn.ttft_ms is None:
                turn.ttft_ms = 1000 * (time.perf_counter() - start)
            turn.text += content


async def _one_turn(client: httpx.AsyncClient, url: str, model: str, turn: Turn) -> None:
    try:
        await asyncio.wait_for(_stream(client, url, model, turn), TURN_TIMEOUT_S)
    except asyncio.TimeoutError:
        turn.error = f"no end in {TURN_TIMEOUT_S:g} s"
    except httpx.HTTPError as exc:
        turn.error = turn.error or type(exc).__name__


async def run_turns(gateway: Gateway, model: str, turns: int, concurrency: int) -> list[Turn]:
    """Closed loop: ``concurrency`` workers start turns 1..``turns`` in order."""
    if httpx.URL(gateway.base_url).host != HOST:
        raise ValueError(f"turns only ever go to {HOST}, not {gateway.base_url}")
    url = gateway.base_url.rstrip("/") + "/chat/completions"
    claimed, done = 0, []

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal claimed
        while claimed < turns:
            claimed += 1
            turn = Turn(claimed)
            await _one_turn(client, url, model, turn)
            done.append(turn)

    limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2)
    timeout = httpx.Timeout(TURN_TIMEOUT_S, connect=5.0)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, headers=gateway.headers) as client:
        await asyncio.wait_for(asyncio.gather(*(worker(client) for _ in range(concurrency))), RUN_TIMEOUT_S)
    return sorted(done, key=lambda t: t.index)


# --- one run: one gateway, one scenario -----------------------------------------


def measure(gateway: Gateway, scenario: Scenario, sim: SimulatorProcess, turns: int, concurrency: int) -> dict:
    """Warm the gateway up on the healthy ``warmup`` endpoint, then script
    the scenario's endpoints (counters zeroed) and run the turns."""
    warm = asyncio.run(run_turns(gateway, "warmup", WARMUP_TURNS, 1))
    sim.reset()
    for profile, fields in scenario.behaviors.items():
        sim.set_behavior(profile, **fields)
    print(f"  {gateway.name}: {turns} turns at concurrency {concurrency} ...", flush=True)
    started = time.perf_counter()
    done = asyncio.run(run_turns(gateway, scenario.chain[0], turns, concurrency))
    wall_s = time.perf_counter() - started
    stats = sim.stats()
    summary = summarize(done, wall_s) | {
        "warmup_errors": sum(t.error is not None for t in warm),
        "upstream_requests": {p: stats.get(p, {}).get("requests", 0) for p in scenario.chain},
    }
    summary["target"] = check(scenario, summary)
    return {"gateway": gateway.name, "summary": summary, "config": gateway.config, "turns": [_turn_record(t) for t in done]}


def _turn_record(turn: Turn) -> dict:
    record = asdict(turn) | {"whole": turn.whole}
    if turn.whole:
        record["text"] = None  # the expected text; kept only where it differs
    return record


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summarize(turns: list[Turn], wall_s: float) -> dict:
    """TTFT over every turn that heard a first token; total over successful turns."""
    n = len(turns)
    ok = [t for t in turns if t.error is None]
    ttfts = [t.ttft_ms for t in turns if t.ttft_ms is not None]
    totals = [t.total_ms for t in ok if t.total_ms is not None]
    return {
        "turns": n,
        "success": len(ok) / n if n else None,
        "whole": sum(t.whole for t in turns) / n if n else None,
        "ttft_p50_ms": _percentile(ttfts, 0.5),
        "ttft_p99_ms": _percentile(ttfts, 0.99),
        "total_p50_ms": _percentile(totals, 0.5),
        "total_p99_ms": _percentile(totals, 0.99),
        "errors": dict(Counter(t.error for t in turns if t.error is not None)),
        "served_by": dict(Counter(t.served_by or "?" for t in ok)),
        "wall_s": round(wall_s, 2),
    }


def check(scenario: Scenario, summary: dict) -> dict:
    value = summary[scenario.target]
    label = {"success": "success rate", "whole": "turns whole and gap-free"}[scenario.target]
    return {"target": f"{label} 100%", "value": value, "pass": value == 1.0}


# --- the whole run ----------------------------------------------------------------


def gateways(scenario: Scenario, sim: SimulatorProcess, directory: Path, args: argparse.Namespace) -> list[Callable[[], contextlib.AbstractContextManager[Gateway]]]:
    """Fresh-process factories, in the order they run."""
    hedges = [False, True] if scenario.key == "3" and not args.no_hedge else [False]
    runs: list[Callable[[], contextlib.AbstractContextManager[Gateway]]] = [
        (lambda hedge=hedge: router_gateway(scenario, sim, directory, hedge, args.serve_mode)) for hedge in hedges
    ]
    if not args.no_litellm:
        runs.append(lambda: litellm_gateway(scenario, sim, directory))
    return runs


def run_all(args: argparse.Namespace) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp, start_simulator(PROFILES) as sim:
        for key in args.scenarios:
            scenario = SCENARIOS[key]
            print(f"scenario {key}: {scenario.title}", flush=True)
            results[key] = []
            for start_gateway in gateways(scenario, sim, Path(tmp), args):
                with start_gateway() as gateway:
                    results[key].append(measure(gateway, scenario, sim, args.turns, args.concurrency))
    return results


def hedge_saving(runs: list[dict]) -> dict | None:
    """p99 TTFT of scenario 3 with hedging off minus with it on."""
    by_name = {run["gateway"]: run["summary"] for run in runs}
    off, on = by_name.get("nemo-router hedge off"), by_name.get("nemo-router hedge on")
    if not off or not on or off["ttft_p99_ms"] is None or on["ttft_p99_ms"] is None:
        return None
    saved = off["ttft_p99_ms"] - on["ttft_p99_ms"]
    return {"ttft_p99_off_ms": off["ttft_p99_ms"], "ttft_p99_on_ms": on["ttft_p99_ms"], "saved_ms": saved, "saved_share": saved / off["ttft_p99_ms"]}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def table(results: dict[str, list[dict]]) -> str:
    header = (
        "| scenario | gateway | success | whole & gap-free | TTFT p50 ms | TTFT p99 ms | total p50 ms | total p99 ms "
        "| errors | upstream requests | target |"
    )
    lines = [header, "|" + "---|" * 11]
    for key, runs in results.items():
        for run in runs:
            s = run["summary"]
            errors = ", ".join(f"{kind}: {n}" for kind, n in s["errors"].items()) or "0"
            upstream = ", ".join(f"{p.upper()} {n}" for p, n in s["upstream_requests"].items())
            target = s["target"]
            verdict = f"{'PASS' if target['pass'] else 'FAIL'} ({target['target']})"
            lines.append(
                f"| {key}. {SCENARIOS[key].title} | {run['gateway']} | {_pct(s['success'])} | {_pct(s['whole'])} "
                f"| {_ms(s['ttft_p50_ms'])} | {_ms(s['ttft_p99_ms'])} | {_ms(s['total_p50_ms'])} | {_ms(s['total_p99_ms'])} "
                f"| {errors} | {upstream} | {verdict} |"
            )
    return "\n".join(lines)


def verdicts(results: dict[str, list[dict]], saving: dict | None) -> str:
    lines = [
        f"- {'PASS' if r['summary']['target']['pass'] else 'FAIL'}: scenario {key}, {r['gateway']}: "
        f"{r['summary']['target']['target']} (measured {_pct(r['summary']['target']['value'])})"
        for key, runs in results.items()
        for r in runs
    ]
    if saving:
        lines.append(
            f"- hedging (delay {HEDGE['delay_s']} s, max share {HEDGE['max_share']}) saves {saving['saved_ms']:.0f} ms "
            f"of p99 TTFT ({100 * saving['saved_share']:.0f}%): {saving['ttft_p99_off_ms']:.0f} -> {saving['ttft_p99_on_ms']:.0f} ms"
        )
    return "\n".join(lines)


def write_report(args: argparse.Namespace, results: dict[str, list[dict]]) -> str:
    saving = hedge_saving(results.get("3", []))
    report = {
        "benchmark": "failover",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "run": {"turns": args.turns, "concurrency": args.concurrency, "serve_mode": args.serve_mode, "warmup_turns": WARMUP_TURNS},
        "profiles": PROFILES,
        "scenarios": {key: asdict(SCENARIOS[key]) for key in results},
        "settings": {"router_group": ROUTER_GROUP, "router_hedge": HEDGE, "litellm_router_settings": LITELLM_SETTINGS, "notes": SETTINGS_NOTES},
        "hedge_saving": saving,
        "results": results,
    }
    text = f"{table(results)}\n\n{verdicts(results, saving)}"
    header = (
        f"Measured {report['when']} on {os.cpu_count()} cores: {args.turns} streamed turns per run at concurrency "
        f"{args.concurrency}, a fresh gateway process per run. TTFT: every turn that heard a first token; "
        "total: successful turns. Upstream requests: what the simulated endpoints received."
    )
    notes = "\n".join(f"- {note}" for note in SETTINGS_NOTES)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(report, indent=2))
    (RESULTS / f"{args.out}.md").write_text(f"{header}\n\nSettings:\n\n{notes}\n\n{text}\n")
    return text


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default="1,2,3", help="which scenarios, e.g. 1,3 (default 1,2,3)")
    parser.add_argument("--turns", type=int, default=200, help="turns per run (default 200)")
    parser.add_argument("--concurrency", type=int, default=4, help="turns in flight at once (default 4)")
    parser.add_argument("--no-hedge", action="store_true", help="scenario 3 without the hedging-on run")
    parser.add_argument("--no-litellm", action="store_true", help="nemo-router only")
    parser.add_argument(
        "--serve-mode", default="fast", choices=("fast", "classic"),
        help="Ray Serve mode (default fast; its HAProxy binds fixed ports, so use classic if another fast-mode router runs here)",
    )
    parser.add_argument("--out", default="failover", help="results file name under benchmarks/results/")
    args = parser.parse_args()
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown or not args.scenarios or args.turns < 1 or args.concurrency < 1:
        parser.error(f"need --scenarios from {','.join(SCENARIOS)}, --turns >= 1 and --concurrency >= 1")
    return args


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # A plain `kill` unwinds like Ctrl-C, so every gateway and the simulator
    # are stopped; a second one must not cut that clean-up short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(143)


def main() -> int:
    args = _parse_args()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    results = run_all(args)
    print(write_report(args, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
