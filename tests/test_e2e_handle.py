"""Python handle calls, for code on the Ray cluster: the same routing,
failover and turn log as HTTP. With Serve's throughput-optimized mode the
handle's router runs on the caller's event loop, so calls are made from
async code (as they are inside another deployment or an async actor)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from helpers import wait_for_records

pytestmark = pytest.mark.ray

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def in_loop(router):
    """Run ``make_coroutine(handle)`` on one long-lived event loop (a handle's
    router is bound to the loop it first ran on), bounded in time."""
    import threading

    from ray import serve

    from deployments.app import APP_NAME

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    handle = serve.get_app_handle(APP_NAME)

    def run(make_coroutine):
        return asyncio.run_coroutine_threadsafe(make_coroutine(handle), loop).result(timeout=60)

    yield run
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


def test_non_streaming_handle_call_returns_the_completion_dict(in_loop, turn_log_path):
    request_id = f"handle-{uuid.uuid4().hex[:8]}"

    async def call(handle):
        return await handle.chat.remote({"model": "voice-fast", "messages": USER, "max_tokens": 3}, request_id=request_id)

    completion = in_loop(call)
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["content"] == "w1 w2 w3"
    assert completion["usage"]["completion_tokens"] == 3
    assert wait_for_records(turn_log_path, {request_id})[request_id]["streamed"] is False


def test_streaming_handle_call_yields_chunks_with_failover(in_loop):
    # failover-503's first endpoint always answers 503: the chain still serves.
    async def call(handle):
        stream = handle.options(stream=True).chat_stream.remote(
            {"model": "failover-503", "messages": USER, "stream_options": {"include_usage": True}}
        )
        return [chunk async for chunk in stream]

    chunks = in_loop(call)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "w1 w2 w3 w4 w5 w6 w7 w8"
    assert chunks[-1]["usage"]["completion_tokens"] == 8


def test_handle_errors_are_typed(in_loop):
    from router.errors import ModelNotFound, TurnFailed

    async def call(handle, model):
        try:
            await handle.chat.remote({"model": model, "messages": USER})
        except Exception as exc:  # Ray wraps the replica's exception: unwrap it
            return getattr(exc, "cause", None) or exc
        return None

    missing = in_loop(lambda h: call(h, "no-such-model"))
    assert isinstance(missing, ModelNotFound) and missing.http_status == 404
    failed = in_loop(lambda h: call(h, "all-fail"))
    assert isinstance(failed, TurnFailed) and failed.http_status == 502 and failed.code == "all_upstreams_failed"
