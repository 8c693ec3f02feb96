"""The floor: what Ray Serve's HTTP path alone adds to a streamed turn here.

A minimal Serve app (one FastAPI ingress deployment that forwards the
provider's stream with a pooled httpx client: no validation, no routing, no
turn log) beside direct calls, at concurrency 1, in both serve modes. What
the router adds above this floor is its own code; the floor is Serve's
(HAProxy or the Python proxy, the replica's ASGI wrapping) and httpx's.

    python benchmarks/serve_floor.py [--turns 200] [--modes fast,classic]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import run_load, summarize  # noqa: E402
from overhead import PROVIDER, RESULTS, free_port  # noqa: E402

from deployments.cli import SERVE_FLAGS  # noqa: E402
from simprovider import start_simulator  # noqa: E402

# Run in a process of its own (Serve's flags are read at import time).
APP = textwrap.dedent(
    """
    import sys, time, httpx, ray
    from fastapi import FastAPI, Request
    from fastapi.responses import StreamingResponse
    from ray import serve

    upstream, port = sys.argv[1], int(sys.argv[2])
    api = FastAPI()

    @serve.deployment(ray_actor_options={"num_cpus": 0}, logging_config={"enable_access_log": False})
    @serve.ingress(api)
    class Floor:
        def __init__(self):
            self._client = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=200))

        @api.post("/v1/chat/completions")
        async def chat(self, request: Request):
            body = await request.body()
            response = await self._client.send(
                self._client.build_request("POST", upstream + "/chat/completions", content=body,
                                           headers={"content-type": "application/json"}), stream=True)

            async def relay():
                try:
                    async for piece in response.aiter_raw():
                        yield piece
                finally:
                    await response.aclose()

            return StreamingResponse(relay(), media_type="text/event-stream")

        @api.get("/health")
        async def health(self):
            return {"status": "ok"}

    ray.init(include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Floor.bind(), route_prefix="/")
    print("ready", flush=True)
    while True:
        time.sleep(1)
    """
)


def start_floor(upstream: str, port: int, mode: str, log_path: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE_")} | SERVE_FLAGS[mode]
    env |= {"RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()), "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port())}
    log = open(log_path, "w")
    process = subprocess.Popen([sys.executable, "-c", APP, upstream, str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    import httpx

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"floor app exited; see {log_path}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"floor app did not start; see {log_path}")


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, 15)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--modes", default="fast,classic")
    args = parser.parse_args()
    rows = {}
    with start_simulator({"bench": PROVIDER}) as sim:
        upstream = sim.base_url("bench")
        for mode in args.modes.split(","):
            port = free_port()
            process = start_floor(upstream, port, mode, RESULTS / f".floor-{mode}.log")
            try:
                time.sleep(5)
                for name, url, model in (("direct", upstream, "sim-model"), (f"serve-floor-{mode}", f"http://127.0.0.1:{port}/v1", "sim-model")):
                    rows[f"{name} ({mode} round)"] = summarize(asyncio.run(run_load(url, model, concurrency=1, turns=args.turns, warmup=10)))
            finally:
                stop(process)
            (RESULTS / f".floor-{mode}.log").unlink(missing_ok=True)
    lines = ["| target | TTFT p50 ms | TTFT p99 ms | total p50 ms |", "|---|---|---|---|"]
    lines += [f"| {name} | {s['ttft_p50_ms']:.1f} | {s['ttft_p99_ms']:.1f} | {s['total_p50_ms']:.1f} |" for name, s in rows.items()]
    text = "\n".join(lines)
    print(text)
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    (RESULTS / "serve_floor.json").write_text(json.dumps({"when": when, "provider": PROVIDER, "turns": args.turns, "results": rows}, indent=2))
    (RESULTS / "serve_floor.md").write_text(f"Measured {when} on {os.cpu_count()} cores, concurrency 1.\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
