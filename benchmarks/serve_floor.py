"""The floors: what Ray Serve's own path costs a streamed turn here, shape by
shape, with none of the router's code.

Minimal Serve apps that only forward the provider's stream (no validation,
no routing, no turn log), beside direct calls, in one run:

- ``relay-httpx``: one FastAPI ingress deployment that calls the provider
  with a pooled httpx client and relays its bytes (the lean shape's floor);
- ``relay-aiohttp``: the same with aiohttp;
- ``caller-hop``: the ingress hands the turn to a second deployment (a
  "provider caller", aiohttp) over a Serve handle and relays its stream (the
  design card's two deployments);
- ``caller-hop+actor``: as ``caller-hop``, plus one call per turn to a plain
  Ray actor before the hand-off (the design card's shape: ingress, one
  ``LatencyTracker`` call, provider caller).

What the router adds above the floor of its shape is its own code; the floor
itself is Serve's, Ray's and the HTTP client's.

    python benchmarks/serve_floor.py [--levels 1:200,20:1000] [--modes fast] [--shapes ...]
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

SHAPES = ("relay-httpx", "relay-aiohttp", "caller-hop", "caller-hop+actor")

# Run in a process of its own (Serve's flags are read at import time).
APP = textwrap.dedent(
    """
    import sys, time, aiohttp, httpx, ray
    from fastapi import FastAPI, Request
    from fastapi.responses import StreamingResponse
    from ray import serve

    upstream, port, shape = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    url = upstream + "/chat/completions"
    headers = {"content-type": "application/json"}
    api = FastAPI()
    options = dict(ray_actor_options={"num_cpus": 0}, logging_config={"enable_access_log": False}, max_ongoing_requests=1000)

    class AiohttpRelay:
        def __init__(self):
            self._session = None

        async def stream(self, body):
            if self._session is None:
                self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2000))
            response = await self._session.post(url, data=body, headers=headers)
            try:
                async for piece in response.content.iter_any():
                    yield piece
            finally:
                response.close()

    class HttpxRelay:
        def __init__(self):
            self._client = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=2000))

        async def stream(self, body):
            response = await self._client.send(self._client.build_request("POST", url, content=body, headers=headers), stream=True)
            try:
                async for piece in response.aiter_raw():
                    yield piece
            finally:
                await response.aclose()

    @ray.remote(num_cpus=0)
    class Tracker:
        def plan(self, group):
            return ["a", "b", "c"]

    @serve.deployment(**options)
    class Caller:
        def __init__(self):
            self._relay = AiohttpRelay()

        async def stream(self, body: bytes):
            async for piece in self._relay.stream(body):
                yield piece

    @serve.deployment(**options)
    @serve.ingress(api)
    class Floor:
        def __init__(self, caller=None):
            self._relay = HttpxRelay() if shape == "relay-httpx" else AiohttpRelay()
            self._caller = caller.options(stream=True) if caller is not None else None
            self._tracker = None
            if shape == "caller-hop+actor":
                self._tracker = Tracker.options(name="floor-tracker", get_if_exists=True, enable_task_events=False).remote()

        @api.post("/v1/chat/completions")
        async def chat(self, request: Request):
            body = await request.body()
            if self._tracker is not None:
                await self._tracker.plan.remote("group")
            pieces = self._caller.stream.remote(body) if self._caller is not None else self._relay.stream(body)
            return StreamingResponse(pieces, media_type="text/event-stream")

        @api.get("/health")
        async def health(self):
            return {"status": "ok"}

    ray.init(include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Floor.bind(Caller.bind()) if shape.startswith("caller-hop") else Floor.bind(), route_prefix="/")
    print("ready", flush=True)
    while True:
        time.sleep(1)
    """
)


def start_floor(upstream: str, port: int, mode: str, shape: str, log_path: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE_")} | SERVE_FLAGS[mode]
    env |= {"RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()), "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port())}
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-c", APP, upstream, str(port), shape], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
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
    stop(process)
    raise RuntimeError(f"floor app did not start; see {log_path}")


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, 15)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)


def measure_shape(upstream: str, mode: str, shape: str, levels: list[tuple[int, int]]) -> dict:
    """Direct and through the floor app, level by level, seconds apart."""
    port = free_port()
    log_path = RESULTS / f".floor-{mode}-{shape}.log"
    process = start_floor(upstream, port, mode, shape, log_path)
    rows = {}
    try:
        time.sleep(5)  # let Ray's start-up work settle
        for concurrency, turns in levels:
            for target, url in (("direct", upstream), (shape, f"http://127.0.0.1:{port}/v1")):
                result = asyncio.run(run_load(url, "sim-model", concurrency=concurrency, turns=turns, warmup=10))
                rows[f"{target} c{concurrency}"] = summarize(result)
    finally:
        stop(process)
    log_path.unlink(missing_ok=True)
    return rows


def table(results: dict) -> str:
    lines = [
        "| shape (serve mode) | conc | direct TTFT p50 ms | floor TTFT p50 ms | added ms | vs direct | floor TTFT p99 ms | floor turns/s | direct turns/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        shape = name.split(" (")[0]
        for key in rows:
            if not key.startswith("direct"):
                continue
            level = key.split()[-1]
            direct, floor = rows[key], rows[f"{shape} {level}"]
            added = floor["ttft_p50_ms"] - direct["ttft_p50_ms"]
            lines.append(
                f"| {name} | {level[1:]} | {direct['ttft_p50_ms']:.1f} | {floor['ttft_p50_ms']:.1f} | {added:+.1f} | "
                f"{floor['ttft_p50_ms'] / direct['ttft_p50_ms']:.3f}x | {floor['ttft_p99_ms']:.1f} | "
                f"{floor['turns_per_s']:.1f} | {direct['turns_per_s']:.1f} |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", default="1:200,20:1000", help="concurrency:turns, comma-separated")
    parser.add_argument("--modes", default="fast", help="fast and/or classic")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    args = parser.parse_args()
    levels = [tuple(int(x) for x in level.split(":")) for level in args.levels.split(",")]
    shapes = args.shapes.split(",")
    if unknown := [s for s in shapes if s not in SHAPES]:
        parser.error(f"unknown shape(s) {unknown}; known: {list(SHAPES)}")
    results = {}
    with start_simulator({"bench": PROVIDER}) as sim:
        upstream = sim.base_url("bench")
        for mode in args.modes.split(","):
            for shape in shapes:
                print(f"measuring {shape} ({mode}) ...", flush=True)
                results[f"{shape} ({mode})"] = measure_shape(upstream, mode, shape, levels)
    text = table(results)
    print(text)
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report = {"when": when, "provider": PROVIDER, "levels": levels, "results": results}
    (RESULTS / "serve_floor.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "serve_floor.md").write_text(
        f"Measured {when} on {os.cpu_count()} cores; each shape's direct row measured seconds before it.\n\n{text}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
