"""Clients that never read their stream: what they cost the router's memory.

Starts a simulated provider whose replies are long (``--tokens``, about
190 bytes of SSE per token) and, for each shape (the design card's, with
provider-caller replicas; and the lean ``upstream_calls: ingress``),
``nemo-router run``. Then opens streamed turns from raw sockets with a
4 KiB receive buffer that read the response headers and nothing more:
first 4, then 8 more (12 stalled). After each step it samples, for 10 s,
the resident memory of the ingress and caller replica processes and how
many of the replies the provider has finished sending (a paused upstream
does not finish).

With ``--before-rev REV`` the same is run, in the same run, from a
worktree of an older commit (the router from before read pacing, e.g.).
Prints a table and saves benchmarks/results/stalled_readers.json and .md.
Loopback only; stops by itself; ends only the processes it started.

    python benchmarks/stalled_readers.py [--tokens 300000] [--before-rev REV]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import free_port, save_results, start_router, stop_router  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STEPS = (4, 8)  # stalled readers opened at each step (4, then 12 in all)
SAMPLE_S = 10.0


def _config(directory: Path, provider_url: str, port: int, shape: str) -> Path:
    config = {
        "server": {"port": port, "stop_grace_s": 0},
        "model_groups": {"bulk": {"endpoints": [{"name": "bulk", "base_url": provider_url, "model": "sim-model"}],
                                  "timeouts": {"total_s": 600}}},
        "turn_log": {"sink": "none"},
        "deployments": {"upstream_calls": shape},
        "cache": {"enabled": False},
        "metrics": {"enabled": False},
    }
    path = directory / f"stalled-{shape}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _replicas(router: subprocess.Popen) -> dict[str, list[psutil.Process]]:
    found: dict[str, list[psutil.Process]] = {"Ingress": [], "ProviderCaller": []}
    for process in psutil.Process(router.pid).children(recursive=True):
        try:
            title = process.name() + " " + " ".join(process.cmdline())
        except psutil.Error:
            continue
        for name in found:
            if f"nemo-router:{name}" in title or f"ServeReplica:nemo-router:{name}" in title:
                found[name].append(process)
    return found


def _rss_mb(replicas: dict[str, list[psutil.Process]]) -> dict[str, float]:
    out = {}
    for name, processes in replicas.items():
        if processes:
            out[name] = round(sum(p.memory_info().rss for p in processes) / 1e6, 1)
    return out


def _stall(port: int) -> socket.socket:
    body = json.dumps({"model": "bulk", "stream": True, "messages": [{"role": "user", "content": "x"}]}).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
    sock.sendall(head + b"content-length: %d\r\n\r\n" % len(body) + body)
    sock.recv(1024)  # the response has started; from here on nothing is read
    return sock


def _sample(sim_url: str, replicas) -> tuple[dict[str, float], int]:
    peak: dict[str, float] = {}
    in_flight = 0
    end = time.monotonic() + SAMPLE_S
    while time.monotonic() < end:
        for name, mb in _rss_mb(replicas).items():
            peak[name] = max(peak.get(name, 0.0), mb)
        in_flight = httpx.get(f"{sim_url}/_sim/stats", timeout=30).json().get("bulk", {}).get("in_flight", 0)
        time.sleep(1.0)
    return peak, in_flight


def run_variant(label: str, shape: str, sim, workdir: Path, code_dir: Path | None) -> list[dict]:
    port = free_port()
    config = _config(workdir, sim.base_url("bulk"), port, shape)
    router = start_router(config, "fast", port, workdir / f"{label}-{shape}.log", code_dir=code_dir)
    rows, sockets = [], []
    try:
        replicas = _replicas(router)
        base = _rss_mb(replicas)
        httpx.post(f"{sim.url}/_sim/reset", timeout=30)
        for step in STEPS:
            sockets += [_stall(port) for _ in range(step)]
            peak, in_flight = _sample(sim.url, replicas)
            growth = {name: round(peak[name] - base[name], 1) for name in peak}
            rows.append({
                "variant": label, "shape": shape, "stalled": len(sockets),
                "rss_growth_mb": growth, "replies_unfinished": in_flight,
            })
            print(f"{label:>7} {shape:>7} stalled={len(sockets):>2} rss growth MB={growth} upstream replies unfinished={in_flight}", flush=True)
    finally:
        for sock in sockets:
            sock.close()
        stop_router(router)
    return rows


def table(rows: list[dict], reply_mb: float) -> str:
    lines = [
        f"Each stalled turn asks for a {reply_mb:.0f} MB reply and reads none of it.",
        "",
        "| router | shape | stalled readers | ingress RSS growth MB | caller RSS growth MB | upstream replies still paused |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        g = r["rss_growth_mb"]
        lines.append(f"| {r['variant']} | {r['shape']} | {r['stalled']} | {g.get('Ingress', '-')} | {g.get('ProviderCaller', '-')} | {r['replies_unfinished']} of {r['stalled']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=300_000)
    parser.add_argument("--before-rev", help="also run the router of this commit (from a worktree)")
    args = parser.parse_args()
    from simprovider import start_simulator

    reply_mb = args.tokens * 195 / 1e6
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp, start_simulator({"bulk": {"ttft_ms": 10, "token_interval_ms": 0, "tokens": args.tokens}}) as sim:
        workdir = Path(tmp)
        variants: list[tuple[str, Path | None]] = [("now", None)]
        if args.before_rev:
            before = workdir / "before"
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(before), args.before_rev], check=True, capture_output=True)
            variants.insert(0, ("before", before))
        try:
            for label, code_dir in variants:
                for shape in ("caller", "ingress"):
                    rows += run_variant(label, shape, sim, workdir, code_dir)
        finally:
            if args.before_rev:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(workdir / "before")], check=False)
    text = table(rows, reply_mb)
    print(text)
    report = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "tokens": args.tokens,
              "before_rev": args.before_rev, "rows": rows}
    save_results("stalled_readers", report, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
