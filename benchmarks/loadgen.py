"""A small closed-loop load generator for streaming chat turns.

``concurrency`` workers each send turns back to back until ``turns`` have
been sent. TTFT is the time from sending the request to the first byte that
carries content; total is to the end of the stream. Loopback only.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from dataclasses import dataclass, field

import httpx

__all__ = ["LoadResult", "run_load", "summarize"]

_CONTENT = re.compile(rb'"content":\s*"[^"]')


@dataclass
class LoadResult:
    ttft_s: list[float] = field(default_factory=list)
    total_s: list[float] = field(default_factory=list)
    errors: int = 0
    wall_s: float = 0.0


def _assert_loopback(url: str) -> None:
    host = httpx.URL(url).host
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
        raise ValueError(f"load is only ever sent to loopback, not {host}")


async def _one_turn(client: httpx.AsyncClient, url: str, body: dict, result: LoadResult) -> None:
    start = time.perf_counter()
    first = None
    try:
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                await response.aread()
                result.errors += 1
                return
            tail = b""
            async for raw in response.aiter_raw():
                if first is None and _CONTENT.search(tail + raw):
                    first = time.perf_counter()
                tail = raw[-32:]
            if not tail.rstrip().endswith(b"[DONE]"):
                result.errors += 1
                return
    except httpx.HTTPError:
        result.errors += 1
        return
    end = time.perf_counter()
    if first is None:
        result.errors += 1
        return
    result.ttft_s.append(first - start)
    result.total_s.append(end - start)


async def run_load(base_url: str, model: str, *, concurrency: int, turns: int, warmup: int = 5, headers: dict | None = None) -> LoadResult:
    _assert_loopback(base_url)
    url = base_url.rstrip("/") + "/chat/completions"
    body = {"model": model, "messages": [{"role": "user", "content": "hello there"}], "stream": True}
    limits = httpx.Limits(max_connections=concurrency + 5, max_keepalive_connections=concurrency + 5)
    async with httpx.AsyncClient(timeout=30, limits=limits, headers=headers) as client:
        scratch = LoadResult()
        for _ in range(warmup):
            await _one_turn(client, url, body, scratch)
        result = LoadResult()
        remaining = turns

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await _one_turn(client, url, body, result)

        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), timeout=600)
        result.wall_s = time.perf_counter() - start
    return result


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summarize(result: LoadResult) -> dict:
    n = len(result.ttft_s)
    return {
        "turns_ok": n,
        "errors": result.errors,
        "ttft_p50_ms": 1000 * statistics.median(result.ttft_s) if n else float("nan"),
        "ttft_p99_ms": 1000 * _pct(result.ttft_s, 0.99),
        "total_p50_ms": 1000 * statistics.median(result.total_s) if n else float("nan"),
        "total_p99_ms": 1000 * _pct(result.total_s, 0.99),
        "turns_per_s": n / result.wall_s if result.wall_s else float("nan"),
    }
