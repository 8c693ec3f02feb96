"""The router's own overhead: direct to the provider vs through the router,
in one run, on this machine.

Starts a simulated provider (TTFT 50 ms, 20 tokens 5 ms apart), then for each
Ray Serve mode (``classic``: Serve's Python HTTP proxy; ``fast``: HAProxy
ingress + RAY_SERVE_THROUGHPUT_OPTIMIZED) starts the router in its own
process and measures streaming turns at concurrency 1 and 20, each beside a
direct measurement taken just before it. Prints a table and saves JSON and
Markdown under benchmarks/results/.

    python benchmarks/overhead.py [--modes classic,fast] [--c1-turns 200] [--c20-turns 500]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import run_load, summarize  # noqa: E402

from simprovider import start_simulator  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PROVIDER = {"ttft_ms": 50, "token_interval_ms": 5, "tokens": 20}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(directory: Path, provider_url: str, port: int, turn_log: dict | None = None) -> Path:
    config = {
        "server": {"port": port},
        "model_groups": {"bench": {"endpoints": [{"name": "sim-bench", "base_url": provider_url, "model": "sim-model"}]}},
        "turn_log": turn_log or {"sink": "local", "path": str(directory / "turnlog")},
        # Every benchmark turn is the same request: measure the path, not the cache.
        "cache": {"enabled": False},
    }
    path = directory / "router.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_router(
    config_path: Path, mode: str, port: int, log_path: Path, extra_env: dict | None = None, *, code_dir: Path | None = None
) -> subprocess.Popen:
    """``nemo-router run`` in its own process group, once ``/health`` answers.

    ``code_dir``: run the router from another checkout of this repository
    (e.g. an older commit, for a before/after comparison in one run); its
    packages come first on the path of the router and of its Ray workers.

    This checkout's router derives every Serve port from its own
    (``deployments.serve_ports``); an older checkout does not, so HAProxy's
    stats and metrics listeners get free ports here for it (their fixed
    defaults are taken by any other router on this machine). A failure or an
    interrupt while waiting stops the process and shows the end of its log.
    """
    haproxy_ports = {"RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()), "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port())}
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE_")} | haproxy_ports | (extra_env or {})
    if code_dir is not None:
        code_dir = Path(code_dir).resolve()
        env["PYTHONPATH"] = os.pathsep.join([str(code_dir), str(code_dir / "logging"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "deployments.cli", "run", "--config", str(config_path), "--serve-mode", mode],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=code_dir,
        )
    try:
        wait_ready(process, f"http://127.0.0.1:{port}/health", log_path)
    except BaseException:
        stop_router(process)
        if log_path.exists():
            print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr, flush=True)
        raise
    return process


def wait_ready(process: subprocess.Popen, url: str, log_path: Path, *, what: str = "router", timeout_s: float = 240) -> None:
    """Poll ``url`` until it answers 200, the process exits, or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited early; see {log_path}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{what} did not become ready in {timeout_s:g} s; see {log_path}")


def save_results(name: str, report: dict, text: str) -> None:
    """``benchmarks/results/<name>.json`` (everything) and ``.md`` (the table)."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2))
    (RESULTS / f"{name}.md").write_text(f"Measured {report['when']} on {os.cpu_count()} cores.\n\n{text}\n")


def stop_router(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def measure(url: str, model: str, levels: list[tuple[int, int]]) -> dict:
    out = {}
    for concurrency, turns in levels:
        result = asyncio.run(run_load(url, model, concurrency=concurrency, turns=turns, warmup=10))
        out[f"c{concurrency}"] = summarize(result)
    return out


def table(rows: dict) -> str:
    header = "| setup | conc | TTFT p50 ms | TTFT p99 ms | total p50 ms | total p99 ms | turns/s | errors | TTFT p50 vs direct |"
    lines = [header, "|" + "---|" * 9]
    for name, levels in rows.items():
        for level, s in levels.items():
            direct = rows.get(f"direct (before {name})", {}).get(level) if not name.startswith("direct") else None
            ratio = f"{s['ttft_p50_ms'] / direct['ttft_p50_ms']:.3f}x (+{s['ttft_p50_ms'] - direct['ttft_p50_ms']:.1f} ms)" if direct else ""
            lines.append(
                f"| {name} | {level[1:]} | {s['ttft_p50_ms']:.1f} | {s['ttft_p99_ms']:.1f} | {s['total_p50_ms']:.1f} "
                f"| {s['total_p99_ms']:.1f} | {s['turns_per_s']:.1f} | {s['errors']} | {ratio} |"
            )
    return "\n".join(lines)


def turn_log_settings(sink: str, directory: Path, stack: contextlib.ExitStack) -> tuple[dict, dict]:
    """The router's turn_log block for ``sink``, and environment it needs."""
    if sink == "none":
        return {"sink": "none"}, {}
    if sink == "local":
        return {"sink": "local", "path": str(directory / "turnlog")}, {}
    from nemo_turnlog.testing import AWS_ENV_TO_CLEAR, FAKE_AWS_ENV, LocalS3Server

    # A loopback moto server with fake credentials: never real AWS.
    for name in AWS_ENV_TO_CLEAR:
        os.environ.pop(name, None)
    os.environ.update(FAKE_AWS_ENV)
    s3 = stack.enter_context(LocalS3Server())
    bucket = s3.new_bucket()
    block = {"bucket": bucket, "prefix": "turns", "region": "us-east-1", "endpoint_url": s3.endpoint_url}
    return {"sink": "s3", "s3": block, "spool": {"path": str(directory / "spool")}}, dict(FAKE_AWS_ENV)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--modes", default="classic,fast")
    parser.add_argument("--c1-turns", type=int, default=200)
    parser.add_argument("--c20-turns", type=int, default=500)
    parser.add_argument("--sinks", default="local", help="turn-log sinks to compare: local,s3,none (s3: a loopback moto server)")
    parser.add_argument("--out", default="overhead", help="results file name under benchmarks/results/")
    args = parser.parse_args()
    levels = [(1, args.c1_turns), (20, args.c20_turns)]
    sinks = args.sinks.split(",")
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp, start_simulator({"bench": PROVIDER}) as sim, contextlib.ExitStack() as stack:
        provider_url = sim.base_url("bench")
        for mode in args.modes.split(","):
            for sink in sinks:
                name = f"router-{mode}" if sinks == ["local"] else f"router-{mode}-{sink}"
                turn_log, extra_env = turn_log_settings(sink, Path(tmp), stack)
                print(f"direct, before {name} ...", flush=True)
                rows[f"direct (before {name})"] = measure(provider_url, "sim-model", levels)
                port = free_port()
                config_path = write_config(Path(tmp), provider_url, port, turn_log)
                print(f"starting {name} ...", flush=True)
                router = start_router(config_path, mode, port, Path(tmp) / f"{name}.log", extra_env)
                try:
                    rows[name] = measure(f"http://127.0.0.1:{port}/v1", "bench", levels)
                finally:
                    stop_router(router)
    report = {
        "benchmark": "overhead",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "provider": PROVIDER,
        "levels": {f"c{c}": n for c, n in levels},
        "results": rows,
    }
    text = table(rows)
    print(text)
    save_results(args.out, report, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
