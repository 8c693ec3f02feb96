"""Direct to the provider, through the router, through LiteLLM proxy: side by
side, in one run, on this machine.

Starts a simulated provider (TTFT 50 ms, 20 tokens 5 ms apart), LiteLLM
proxy (installed on first use into its own virtual environment, see
litellm_proxy.py; one worker per core, no callbacks) on the same provider, and the
router (Serve mode ``fast``, local turn log, cache off). Then, for each
concurrency level, measures streaming turns against direct, the router and
LiteLLM back to back, each after its own warm-up, so drift on a busy machine
hits all three alike. Per measurement: TTFT and total p50/p99, turns per
second, errors, and CPU seconds per turn of each process tree (the router:
``nemo-router run`` with Ray's GCS, raylet, workers and HAProxy; LiteLLM:
its proxy process and workers; the provider; the load generator itself).

Both gateways are up during every measurement and share the machine's cores
with the provider and the load generator; the idle one's CPU is measured
too and printed with the results.

Each router variant (``--router-variants``; names in VARIANTS) gets a round
of its own: its router starts, every level is measured, it stops, and the
next one starts. Direct and LiteLLM are measured again in every round, so a
variant's ratios come from measurements taken seconds apart, never from
another round (and only one Ray instance runs at a time).

Prints a Markdown table and PASS/FAIL for the targets, and saves
benchmarks/results/<out>.json, .md and .png (see plot.py).

    python benchmarks/compare.py [--levels 1:200,20:500,50:1000] [--router-variants router,router-lean]
                                 [--warmup-turns 20] [--out compare]

NEMO_BENCH_LITELLM_VENV picks the LiteLLM virtual environment (default:
benchmarks/.litellm-venv, created on first use).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from litellm_proxy import litellm_proxy, openai_deployment  # noqa: E402
from loadgen import run_load, summarize  # noqa: E402
from overhead import free_port, start_router, stop_router, write_config  # noqa: E402
from plot import plot_compare  # noqa: E402
from procstats import ProcessSample, cpu_s_between, memory_mb, sample_tree  # noqa: E402

from router.errors import ConfigError  # noqa: E402
from simprovider import start_simulator  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
PROVIDER = {"ttft_ms": 50, "token_interval_ms": 5, "tokens": 20}
DEFAULT_LEVELS = "1:200,20:500,50:1000"
SERVE_MODE = "fast"
# Overrides merged into the router YAML's ``deployments:`` block.
VARIANTS: dict[str, dict] = {
    "router": {},
    "router-snapshot": {"planning": "snapshot"},
    "router-lean": {"planning": "snapshot", "upstream_calls": "ingress"},
    # The router as it was at --before-rev: the "before" columns, run from a
    # git worktree of that commit, in the same run (default shape, and lean).
    "router-before": {},
    "router-lean-before": {"planning": "snapshot", "upstream_calls": "ingress"},
}


def _is_before(variant: str) -> bool:
    return variant.endswith("-before")
# Ray Serve keeps deploying for a moment after /health first answers.
SETTLE_S = 5.0

# Targets, each a ratio between measurements of the same round.
TTFT_P50_VS_DIRECT_MAX = {1: 1.06, 20: 1.4}
TURNS_PER_S_VS_LITELLM_MIN = {20: 3.0}
NO_ERRORS_AT = (50,)


@dataclass(frozen=True)
class Target:
    """Where turns go, and which watched process tree's CPU is charged to it."""

    name: str
    base_url: str
    model: str
    headers: dict | None = None
    process: str | None = None


@dataclass(frozen=True)
class Bench:
    """What stays up for the whole run: the provider and LiteLLM, the targets
    they are, and their pids (their process trees are watched)."""

    tmp: Path
    provider_url: str
    direct: Target
    litellm: Target
    pids: dict[str, int]
    before_dir: Path | None = None  # a worktree of --before-rev, for the router-before variant


# --- measuring ---------------------------------------------------------------


# Watched processes by name, each a callable sampling it (procstats).
Watched = dict[str, Callable[[], list[ProcessSample]]]


def measure(target: Target, concurrency: int, turns: int, warmup_turns: int, watched: Watched) -> dict:
    """One level against one target: warm-up at the level's concurrency (at
    least one turn per worker, not measured), then ``turns`` measured turns
    with every watched process's CPU time taken around them."""
    warmup = _load(target, concurrency, max(warmup_turns, concurrency))
    before = {name: sample() for name, sample in watched.items()}
    started_at, start_s = _now(), time.perf_counter()
    result = _load(target, concurrency, turns)
    window_s = time.perf_counter() - start_s
    after = {name: sample() for name, sample in watched.items()}
    cpu = {name: cpu_s_between(before[name], after[name]) for name in watched}
    summary = summarize(result)
    own = cpu[target.process] if target.process else None
    return summary | {
        "started_at": started_at,
        "window_s": round(window_s, 3),
        "warmup_errors": warmup.errors,
        "cpu_s": {name: round(c["total"], 4) for name, c in cpu.items()},
        "cpu_s_per_turn": own["total"] / summary["turns_ok"] if own and summary["turns_ok"] else None,
        "cpu_s_by_label": {k: round(v, 4) for k, v in own["by_label"].items()} if own else None,
        "cpu_vanished_processes": own["vanished"] if own else None,
        "rss_mb": {name: round(memory_mb(samples)["rss_mb"], 1) for name, samples in after.items()},
    }


def _load(target: Target, concurrency: int, turns: int):
    return asyncio.run(run_load(target.base_url, target.model, concurrency=concurrency, turns=turns, warmup=0, headers=target.headers))


def add_ratios(rows: dict[str, dict]) -> None:
    """TTFT p50 against direct's and turns/s against LiteLLM's, in place."""
    direct, litellm = rows["direct"], rows["litellm"]
    for name, row in rows.items():
        row["ttft_p50_vs_direct"] = _ratio(row["ttft_p50_ms"], direct["ttft_p50_ms"]) if name != "direct" else None
        row["turns_per_s_vs_litellm"] = _ratio(row["turns_per_s"], litellm["turns_per_s"]) if name != "litellm" else None


def _ratio(value: float, reference: float) -> float | None:
    ok = value == value and reference == reference and reference > 0  # NaN when nothing succeeded
    return round(value / reference, 3) if ok else None


# --- one round: one router variant -------------------------------------------


def run_round(variant: str, levels: list[tuple[int, int]], warmup_turns: int, bench: Bench) -> dict:
    code_dir = bench.before_dir if _is_before(variant) else None
    directory = bench.tmp / variant
    directory.mkdir()
    port = free_port()
    config_path = router_config(directory, bench.provider_url, port, VARIANTS[variant])
    print(f"starting the router ({variant}, serve mode {SERVE_MODE}) ...", flush=True)
    log_path = directory / "router.log"
    started_at = _now()
    process = start_router(config_path, SERVE_MODE, port, log_path, code_dir=code_dir)
    pids = bench.pids | {"router": process.pid}
    watched: Watched = {name: partial(sample_tree, pid) for name, pid in pids.items()} | {"loadgen": _sample_self}
    router = Target(variant, f"http://127.0.0.1:{port}/v1", "bench", process="router")
    targets = [bench.direct, router, bench.litellm]
    try:
        time.sleep(SETTLE_S)
        results = {f"c{c}": measure_level(targets, c, n, warmup_turns, watched) for c, n in levels}
        memory = {name: _memory(pids[name]) for name in ("router", "litellm")}
    finally:
        _stop_router_tree(process)
    return {
        "variant": variant,
        "deployments_overrides": VARIANTS[variant],
        "started_at": started_at,
        "levels": results,
        "memory_after_round": memory,
    }


def _memory(pid: int) -> dict:
    """RSS and USS of a tree, taken outside the measured windows (USS reads
    every process's smaps)."""
    memory = memory_mb(sample_tree(pid, uss=True))
    return {k: round(v, 1) for k, v in memory.items() if k in ("rss_mb", "uss_mb")} | {"processes": memory["processes"]}


def measure_level(targets: list[Target], concurrency: int, turns: int, warmup_turns: int, watched: Watched) -> dict:
    rows = {}
    for target in targets:
        rows[target.name] = row = measure(target, concurrency, turns, warmup_turns, watched)
        print(
            f"  c{concurrency} {target.name:<12} TTFT p50 {row['ttft_p50_ms']:7.1f} ms  p99 {row['ttft_p99_ms']:7.1f} ms"
            f"  {row['turns_per_s']:6.1f} turns/s  errors {row['errors']}",
            flush=True,
        )
    add_ratios(rows)
    return rows


def router_config(directory: Path, provider_url: str, port: int, overrides: dict) -> Path:
    path = write_config(directory, provider_url, port)
    config = yaml.safe_load(path.read_text())
    config["deployments"] = config.get("deployments", {}) | overrides
    path.write_text(yaml.safe_dump(config))
    return path


def check_variant_configs(variants: list[str]) -> None:
    """Validate every variant's router YAML before anything starts (a run
    takes minutes); raises the router's ConfigError."""
    from router.config import load_config

    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:
            directory = Path(tmp) / variant
            directory.mkdir()
            load_config(router_config(directory, "http://127.0.0.1:9/v1", 8000, VARIANTS[variant]), environ={})


@contextlib.contextmanager
def _worktree(rev: str | None):
    """A detached git worktree of ``rev`` in a temporary folder (None: no-op)."""
    if rev is None:
        yield None
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(path), rev], check=True, capture_output=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], capture_output=True)


def _stop_router_tree(process: subprocess.Popen) -> None:
    """Stop the router, then anything of its tree that outlived it."""
    descendants = []
    with contextlib.suppress(psutil.Error):
        descendants = psutil.Process(process.pid).children(recursive=True)
    try:
        stop_router(process)
    finally:
        for leftover in descendants:
            with contextlib.suppress(psutil.Error):
                leftover.kill()  # psutil checks it is still the same process


# --- the whole run -------------------------------------------------------------


def run(levels: list[tuple[int, int]], variants: list[str], warmup_turns: int, before_dir: Path | None = None) -> dict:
    started_at, machine = _now(), machine_info()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        sim = stack.enter_context(start_simulator({"bench": PROVIDER}))
        provider_url = sim.base_url("bench")
        # LiteLLM at its best on this machine: one worker per core (the
        # router's processes use every core too).
        workers = os.cpu_count() or 1
        print(f"starting LiteLLM proxy ({workers} workers) ...", flush=True)
        model_list = [openai_deployment("bench", provider_url)]
        proxy = stack.enter_context(litellm_proxy(model_list, port=(port := free_port()), log_path=tmp / "litellm.log", workers=workers))
        bench = Bench(
            tmp=tmp,
            provider_url=provider_url,
            direct=Target("direct", provider_url, "sim-model"),
            litellm=Target("litellm", proxy.base_url, "bench", proxy.headers, process="litellm"),
            pids={"provider": sim.popen.pid, "litellm": _litellm_pid(port)},
            before_dir=before_dir,
        )
        rounds = [run_round(variant, levels, warmup_turns, bench) for variant in variants]
    return {
        "benchmark": "compare",
        "started_at": started_at,
        "finished_at": _now(),
        "machine": machine | {"load_avg_1m_end": round(os.getloadavg()[0], 2)},
        "router": {"commit": _git_commit(), "serve_mode": SERVE_MODE, "variants": {v: VARIANTS[v] for v in variants}},
        "litellm": {"version": proxy.version, "workers": workers},
        "provider": PROVIDER,
        "levels": [{"concurrency": c, "turns": n} for c, n in levels],
        "warmup_turns": warmup_turns,
        "rounds": rounds,
    }


def _litellm_pid(port: int) -> int:
    """The LiteLLM proxy's pid (litellm_proxy does not expose it): our child
    started with ``--port <port>``."""
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            cmdline = child.cmdline()
            if any("litellm" in part for part in cmdline) and str(port) in cmdline:
                return child.pid
    raise RuntimeError(f"no LiteLLM process on port {port} among this process's children")


def _sample_self() -> list[ProcessSample]:
    """The load generator alone: its tree would hold every server too."""
    me = psutil.Process()
    with me.oneshot():
        cpu = me.cpu_times()
        return [ProcessSample(me.pid, me.create_time(), "loadgen", me.memory_info().rss, None, cpu.user + cpu.system)]


def machine_info() -> dict:
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "ray": importlib.metadata.version("ray"),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "?"
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- targets and reporting -------------------------------------------------------


def check_targets(round_: dict) -> list[dict]:
    """PASS/FAIL for every target whose level was measured in this round (a
    ratio is None when its reference had no successful turn: FAIL)."""
    variant, checks = round_["variant"], []

    def row(concurrency: int) -> dict | None:
        return round_["levels"].get(f"c{concurrency}", {}).get(variant)

    def check(target: str, value, passed: bool) -> None:
        checks.append({"variant": variant, "target": target, "value": value, "pass": passed})

    for c, limit in TTFT_P50_VS_DIRECT_MAX.items():
        if r := row(c):
            ratio = r["ttft_p50_vs_direct"]
            check(f"c{c} TTFT p50 <= {limit}x direct", ratio, ratio is not None and ratio <= limit)
    for c, floor in TURNS_PER_S_VS_LITELLM_MIN.items():
        if r := row(c):
            ratio = r["turns_per_s_vs_litellm"]
            check(f"c{c} turns/s >= {floor}x LiteLLM", ratio, ratio is not None and ratio >= floor)
    for c in NO_ERRORS_AT:
        if r := row(c):
            errors = r["errors"] + r["warmup_errors"]
            check(f"c{c} no errors, warm-up included (TTFT p99 {r['ttft_p99_ms']:.1f} ms)", errors, errors == 0)
    return checks


def table(round_: dict) -> str:
    header = (
        "| target | conc | TTFT p50 ms | TTFT p99 ms | total p50 ms | total p99 ms | turns/s | errors "
        "| CPU ms/turn | TTFT p50 vs direct | turns/s vs LiteLLM |"
    )
    lines = [header, "|" + "---|" * 11]
    for level, rows in round_["levels"].items():
        for name, s in rows.items():
            cpu = "-" if s["cpu_s_per_turn"] is None else f"{1000 * s['cpu_s_per_turn']:.2f}"
            lines.append(
                f"| {name} | {level[1:]} | {s['ttft_p50_ms']:.1f} | {s['ttft_p99_ms']:.1f} | {s['total_p50_ms']:.1f} "
                f"| {s['total_p99_ms']:.1f} | {s['turns_per_s']:.1f} | {s['errors']} | {cpu} "
                f"| {_times(s['ttft_p50_vs_direct'])} | {_times(s['turns_per_s_vs_litellm'])} |"
            )
    return "\n".join(lines)


def _times(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.2f}x"


def idle_neighbours(round_: dict) -> str:
    """How busy the gateway not being measured was, as a share of one core."""
    variant = round_["variant"]

    def share(measured: str, idle: str) -> float:
        rows = [level[measured] for level in round_["levels"].values()]
        return 100 * sum(r["cpu_s"][idle] for r in rows) / sum(r["window_s"] for r in rows)

    return (
        f"Both gateways stay up for the whole round on the same cores: while {variant} was measured, idle LiteLLM used "
        f"{share(variant, 'litellm'):.1f}% of one core; while LiteLLM was measured, idle {variant} (with Ray) used "
        f"{share('litellm', 'router'):.1f}%."
    )


def markdown(report: dict, checks: list[dict]) -> str:
    machine, parts = report["machine"], []
    parts.append(
        f"Measured {report['started_at']} on {machine['cpus']} cores ({machine['cpu_model']}), one machine, loopback: "
        f"provider TTFT {PROVIDER['ttft_ms']} ms, {PROVIDER['tokens']} tokens {PROVIDER['token_interval_ms']} ms apart; "
        f"router {report['router']['commit']} (serve mode {SERVE_MODE}); LiteLLM {report['litellm']['version']} "
        f"({report['litellm']['workers']} workers); load average {machine['load_avg_1m']} at the start. CPU: the target's whole process tree "
        f"over the measured turns, per successful turn, its idle background included (most of it at concurrency 1)."
    )
    for round_ in report["rounds"]:
        overrides = ", ".join(f"{k}: {v}" for k, v in round_["deployments_overrides"].items()) or "none"
        parts += [f"### {round_['variant']} (deployments overrides: {overrides})", table(round_), idle_neighbours(round_)]
    parts.append("\n".join(f"- {'PASS' if c['pass'] else 'FAIL'}: {c['variant']} {c['target']} (measured {c['value']})" for c in checks))
    return "\n\n".join(parts) + "\n"


def save(report: dict, text: str, out: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{out}.json").write_text(json.dumps(report, indent=2))
    (RESULTS / f"{out}.md").write_text(text)
    plot_compare(report, RESULTS / f"{out}.png")
    return RESULTS / out


# --- command line ------------------------------------------------------------------


def parse_levels(text: str) -> list[tuple[int, int]]:
    """``1:200,20:500`` -> [(1, 200), (20, 500)]: concurrency and measured turns."""
    levels = []
    for item in text.split(","):
        concurrency, _, turns = item.partition(":")
        levels.append((int(concurrency), int(turns)))
    if any(c < 1 or n < c for c, n in levels):
        raise ValueError("each level needs concurrency >= 1 and turns >= concurrency")
    return levels


def _exit_on_sigterm(signum: int, _frame) -> None:
    # SystemExit unwinds every context manager, so the servers stop too.
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default=DEFAULT_LEVELS, help=f"concurrency:turns,... (default {DEFAULT_LEVELS})")
    parser.add_argument("--router-variants", default="router", help=f"comma-separated, of: {', '.join(VARIANTS)} (default router)")
    parser.add_argument("--warmup-turns", type=int, default=20, help="unmeasured turns per target and level (at least one per worker)")
    parser.add_argument("--out", default="compare", help="results base name under benchmarks/results/ (default compare)")
    parser.add_argument("--before-rev", default=None, help="git revision the router-before variant runs (default: none)")
    args = parser.parse_args()
    if any(_is_before(v) for v in args.router_variants.split(",")) and not args.before_rev:
        parser.error("the *-before variants need --before-rev")
    try:
        levels = parse_levels(args.levels)
    except ValueError as exc:
        parser.error(f"--levels: {exc}")
    variants = args.router_variants.split(",")
    if unknown := [v for v in variants if v not in VARIANTS]:
        parser.error(f"unknown router variant(s) {unknown}; known: {list(VARIANTS)}")
    try:
        check_variant_configs([v for v in variants if not _is_before(v)])
    except ConfigError as exc:
        parser.error(f"--router-variants: {exc}")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with _worktree(args.before_rev) as before_dir:
        report = run(levels, variants, args.warmup_turns, before_dir)
    report["before_rev"] = args.before_rev
    checks = [check for round_ in report["rounds"] for check in check_targets(round_)]
    report["checks"] = checks
    text = markdown(report, checks)
    print("\n" + text)
    print(f"saved {save(report, text, args.out)}.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
