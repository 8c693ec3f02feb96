"""A small closed-loop load generator for streaming chat turns.

``concurrency`` workers each send turns back to back until ``turns`` have
been sent. TTFT is the time from sending the request to the first byte that
carries content; total is to the end of the stream. Loopback only.

The client is aiohttp, not httpx: on this 2-core machine an httpx client
driving 50 streams spent about 11 ms of CPU per turn (aiohttp: 1.4 ms) and
stalled some turns for seconds (p99 TTFT 4.2 s direct to the simulator,
92 turns/s; aiohttp: 80 ms, 333 turns/s, the simulator's own limit at
c50). Those seconds were the load generator's, yet they showed up in every
target's column (encode/httpx#3215 tracks the gap).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp

__all__ = ["LoadResult", "assert_loopback", "chat_body", "load_session", "one_turn", "run_load", "summarize"]

_CONTENT = re.compile(rb'"content":\s*"[^"]')
TURN_TIMEOUT_S = 30.0


@dataclass
class LoadResult:
    ttft_s: list[float] = field(default_factory=list)
    total_s: list[float] = field(default_factory=list)
    errors: int = 0
    wall_s: float = 0.0


def assert_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
        raise ValueError(f"load is only ever sent to loopback, not {host}")


def chat_body(model: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hello there"}], "stream": True}


@contextlib.asynccontextmanager
async def load_session(concurrency: int, headers: dict | None = None) -> AsyncIterator[aiohttp.ClientSession]:
    """One keep-alive connection per worker (and a few spare), no cookies."""
    connector = aiohttp.TCPConnector(limit=concurrency + 5)
    async with aiohttp.ClientSession(
        connector=connector,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=TURN_TIMEOUT_S),
        cookie_jar=aiohttp.DummyCookieJar(),
        # The simulator and the gateways send identity bodies; asking for
        # nothing else keeps every target's bytes comparable.
        auto_decompress=False,
    ) as session:
        yield session


async def one_turn(session: aiohttp.ClientSession, url: str, body: dict, result: LoadResult) -> None:
    """One streamed turn; its times go into ``result``, or one error."""
    start = time.perf_counter()
    first = None
    try:
        async with session.post(url, json=body) as response:
            if response.status != 200:
                await response.read()
                result.errors += 1
                return
            tail = b""
            async for raw in response.content.iter_any():
                if first is None and _CONTENT.search(tail + raw):
                    first = time.perf_counter()
                tail = (tail + raw)[-32:]
            if not tail.rstrip().endswith(b"[DONE]"):
                result.errors += 1
                return
    except (aiohttp.ClientError, asyncio.TimeoutError):
        result.errors += 1
        return
    end = time.perf_counter()
    if first is None:
        result.errors += 1
        return
    result.ttft_s.append(first - start)
    result.total_s.append(end - start)


async def run_load(base_url: str, model: str, *, concurrency: int, turns: int, warmup: int = 5, headers: dict | None = None) -> LoadResult:
    assert_loopback(base_url)
    url = base_url.rstrip("/") + "/chat/completions"
    body = chat_body(model)
    async with load_session(concurrency, headers) as session:
        scratch = LoadResult()
        for _ in range(warmup):
            await one_turn(session, url, body, scratch)
        result = LoadResult()
        remaining = turns

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await one_turn(session, url, body, result)

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
