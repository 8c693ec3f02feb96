"""Both upstream clients keep one contract, against the simulated provider on
loopback (no Ray): a 2xx response streamed piece by piece or read whole,
error statuses and transport failures as the router's typed errors, and an
unfinished stream closing its upstream connection."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from deployments.upstream import upstream_pool
from router.config import EndpointConfig, TimeoutConfig
from router.errors import UpstreamConnectError, UpstreamDisconnected, UpstreamStatusError, UpstreamTimeout
from router.providers import codec_for
from simprovider import start_simulator

PROFILES = {
    "ok": {"ttft_ms": 5, "token_interval_ms": 2, "tokens": 6},
    "busy": {"failure": "http_503", "retry_after_s": 2},
    "hang": {"failure": "hang"},
    "drop": {"ttft_ms": 0, "token_interval_ms": 1, "failure": "drop_after", "drop_after_tokens": 2},
    "long": {"ttft_ms": 0, "token_interval_ms": 50, "tokens": 200},
}
CLIENTS = ["aiohttp", "httpx"]
CODEC = codec_for("openai")
TIMEOUTS = TimeoutConfig(connect_s=1, first_token_s=1, stall_s=1)


@pytest.fixture(scope="module")
def sim():
    with start_simulator(PROFILES) as simulator:
        yield simulator


def endpoint(base_url: str) -> EndpointConfig:
    return EndpointConfig(name="e", base_url=base_url, model="m")


def body(stream: bool) -> bytes:
    return json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}).encode()


async def stream_all(pool, base_url: str, timeouts=TIMEOUTS) -> list[bytes]:
    async with pool.open(endpoint(base_url), CODEC, body(True), timeouts, stream=True) as response:
        return [piece async for piece in pool.chunks(response, "e")]


@pytest.mark.parametrize("client", CLIENTS)
def test_a_stream_arrives_piece_by_piece_and_whole(sim, client):
    async def run():
        pool = upstream_pool(client, {})
        try:
            pieces = await stream_all(pool, sim.base_url("ok"))
            again = await stream_all(pool, sim.base_url("ok"))  # over the kept-alive connection
        finally:
            await pool.aclose()
        return pieces, again

    pieces, again = asyncio.run(run())
    text = b"".join(pieces).decode()
    assert len(pieces) > 3  # forwarded as read, not gathered into one
    assert "w6" in text and text.rstrip().endswith("[DONE]")
    assert b"".join(again).decode().rstrip().endswith("[DONE]")


@pytest.mark.parametrize("client", CLIENTS)
def test_a_completion_is_read_whole(sim, client):
    async def run():
        pool = upstream_pool(client, {})
        try:
            async with pool.open(endpoint(sim.base_url("ok")), CODEC, body(False), TIMEOUTS, stream=False) as response:
                return json.loads(await pool.read(response, "e"))
        finally:
            await pool.aclose()

    completion = asyncio.run(run())
    assert completion["object"] == "chat.completion"
    assert completion["usage"]["completion_tokens"] == 6


@pytest.mark.parametrize("client", CLIENTS)
def test_an_error_status_is_a_typed_error_with_its_retry_after(sim, client):
    async def run():
        pool = upstream_pool(client, {})
        try:
            await stream_all(pool, sim.base_url("busy"))
        finally:
            await pool.aclose()

    with pytest.raises(UpstreamStatusError) as caught:
        asyncio.run(run())
    assert caught.value.status_code == 503 and caught.value.retryable
    assert caught.value.retry_after_s == 2


@pytest.mark.parametrize("client", CLIENTS)
def test_nothing_listening_is_a_connect_error(client):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there

    async def run():
        pool = upstream_pool(client, {})
        try:
            await stream_all(pool, f"http://127.0.0.1:{port}/v1")
        finally:
            await pool.aclose()

    with pytest.raises(UpstreamConnectError):
        asyncio.run(run())


@pytest.mark.parametrize("client", CLIENTS)
def test_an_upstream_that_sends_nothing_times_out(sim, client):
    async def run():
        pool = upstream_pool(client, {})
        try:
            await stream_all(pool, sim.base_url("hang"), TimeoutConfig(connect_s=1, first_token_s=0.3, stall_s=0.3))
        finally:
            await pool.aclose()

    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        asyncio.run(run())
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("client", CLIENTS)
def test_a_connection_dropped_mid_stream_is_a_disconnect(sim, client):
    async def run():
        pool = upstream_pool(client, {})
        try:
            await stream_all(pool, sim.base_url("drop"))
        finally:
            await pool.aclose()

    with pytest.raises(UpstreamDisconnected):
        asyncio.run(run())


@pytest.mark.parametrize("client", CLIENTS)
def test_leaving_a_stream_unfinished_closes_its_upstream_connection(sim, client):
    async def run():
        pool = upstream_pool(client, {})
        try:
            async with pool.open(endpoint(sim.base_url("long")), CODEC, body(True), TIMEOUTS, stream=True) as response:
                async for _ in pool.chunks(response, "e"):
                    break  # 10 s of tokens left
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and sim.stats()["long"]["in_flight"] > 0:
                await asyncio.sleep(0.05)
            return sim.stats()["long"]["in_flight"]
        finally:
            await pool.aclose()

    assert asyncio.run(run()) == 0
