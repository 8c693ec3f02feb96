"""Every turn accounted exactly once, end to end (issue 13): clients that
hang up early leave no turn counted in flight, a malformed chunk mid-stream
never costs a word, and a provider-caller killed mid-stream leaves a
completed turn (carried over to another caller) or a clean SSE error, and a
record either way.

Its own app (own tracker, two caller replicas, profiles of its own) so that
killing a caller disturbs no other test.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
import uuid
from urllib.parse import urlsplit

import httpx
import pytest
from helpers import replica_pids, wait_for_records

pytestmark = pytest.mark.ray

APP = "nemo-router-acct"
PREFIX = "/acct"
USER = [{"role": "user", "content": "count"}]
REPORT_INTERVAL_S = 0.05


@pytest.fixture(scope="module")
def acct(router, simulator, tmp_path_factory):
    from ray import serve

    from deployments.app import build_app
    from router.config import parse_config

    profiles = {
        "acct-fast": {"ttft_ms": 30, "token_interval_ms": 20, "tokens": 30},
        "acct-medium": {"ttft_ms": 150, "token_interval_ms": 20, "tokens": 30},
        "acct-slow": {"ttft_ms": 300, "token_interval_ms": 20, "tokens": 30},
        "acct-malformed": {"ttft_ms": 10, "token_interval_ms": 5, "tokens": 20, "failure": "malformed", "drop_after_tokens": 3},
        "acct-continuer": {"ttft_ms": 10, "token_interval_ms": 0, "tokens": 20},
        "acct-long": {"ttft_ms": 10, "token_interval_ms": 40, "tokens": 60},
    }
    for name, fields in profiles.items():
        simulator.set_behavior(name, **fields)
    turn_log = tmp_path_factory.mktemp("acct-turnlog")
    ep = lambda name: {"name": name, "base_url": simulator.base_url(name), "model": "sim-model"}  # noqa: E731
    steady = {"breaker": {"consecutive_failures": 10_000, "min_requests": 10_000}}
    config = parse_config(
        {
            "model_groups": {
                "acct-live": {
                    "strategy": "latency-based",
                    "latency": {"explore_share": 0.0},
                    "endpoints": [ep("acct-fast"), ep("acct-medium"), ep("acct-slow")],
                },
                "acct-malformed": {"strategy": "ordered", **steady, "endpoints": [ep("acct-malformed"), ep("acct-continuer")]},
                "acct-long": {"strategy": "ordered", **steady, "endpoints": [ep("acct-long")]},
            },
            "turn_log": {"sink": "local", "path": str(turn_log), "flush_interval_s": 0.3},
            "deployments": {"tracker_name": "nemo-tracker-acct", "caller_replicas": 2,
                            "report_interval_s": REPORT_INTERVAL_S},
            "cache": {"enabled": False},
            "metrics": {"enabled": False},
        }
    )
    serve.run(build_app(config), name=APP, route_prefix=PREFIX)
    url = f"{router}{PREFIX}"
    # Warm the latency estimates: the fast endpoint is known to be fastest.
    with httpx.Client(timeout=20) as client:
        for _ in range(6):
            for name in ("acct-live",):
                client.post(f"{url}/v1/chat/completions", json={"model": name, "messages": USER})
    yield url, turn_log
    serve.delete(APP)


def routing(url: str) -> dict:
    return httpx.get(f"{url}/v1/routing", timeout=10).json()["endpoints"]


def _request_bytes(url: str, body: dict, request_id: str) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    head = (
        f"POST {parts.path}/v1/chat/completions HTTP/1.1\r\nhost: {parts.hostname}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(payload)}\r\nx-request-id: {request_id}\r\n\r\n"
    ).encode()
    return parts.hostname, parts.port, head + payload


def hang_up(url: str, body: dict, *, after_first_words: bool) -> None:
    """A raw client that sends a turn and closes the connection, either within
    a few milliseconds or as soon as the first words arrive."""
    host, port, data = _request_bytes(url, body, f"hangup-{uuid.uuid4().hex[:8]}")
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(data)
        if not after_first_words:
            time.sleep(0.003)  # the client's own think time, not a wait for the router
            return
        received = b""
        deadline = time.monotonic() + 10
        while b'"content":"w' not in received and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        assert b'"content":"w' in received


def wait_until(predicate, timeout_s: float, interval_s: float = 0.02):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    return predicate()


def test_clients_that_hang_up_leave_nothing_in_flight_and_routing_stays_on_the_fastest(acct):
    from concurrent.futures import ThreadPoolExecutor

    url, _ = acct
    body = {"model": "acct-live", "stream": True, "messages": USER}
    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(lambda _: hang_up(url, body, after_first_words=False), range(50)))
        list(pool.map(lambda _: hang_up(url, body, after_first_words=True), range(50)))
    settled_at = time.monotonic()
    live = ("acct-fast", "acct-medium", "acct-slow")

    def all_zero():
        snapshot = routing(url)
        return all(snapshot[name]["in_flight"] == 0 for name in live)

    # Every hang-up is noticed and its lease released: by the caller's
    # cancelled outcome, or by the ingress closing the turn.
    assert wait_until(all_zero, timeout_s=3.0), {n: routing(url)[n]["in_flight"] for n in live}
    print(f"in_flight back to 0 {time.monotonic() - settled_at:.3f} s after the last hang-up")
    with httpx.Client(timeout=20) as client:
        served = [client.post(f"{url}/v1/chat/completions", json={**body, "stream": False}).headers["x-nemo-endpoint"]
                  for _ in range(5)]
    assert served == ["acct-fast"] * 5


@pytest.mark.parametrize("k", range(1, 11))
def test_a_malformed_chunk_after_k_words_costs_no_word(acct, simulator, k):
    url, turn_log = acct
    simulator.set_behavior("acct-malformed", drop_after_tokens=k)
    request_id = f"malformed-{k}-{uuid.uuid4().hex[:8]}"
    text = ""
    with httpx.Client(timeout=20) as client:
        with client.stream("POST", f"{url}/v1/chat/completions", headers={"x-request-id": request_id},
                           json={"model": "acct-malformed", "stream": True, "messages": USER}) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    chunk = json.loads(line[6:])
                    assert "error" not in chunk
                    if chunk.get("choices"):
                        text += chunk["choices"][0]["delta"].get("content") or ""
    assert text == " ".join(f"w{i}" for i in range(1, 21))
    record = wait_for_records(turn_log, {request_id})[request_id]
    assert [a["outcome"] for a in record["attempts"]] == ["protocol_error", "ok"]


def _caller_pids() -> list[int]:
    return replica_pids(APP, "ProviderCaller")


def test_a_caller_killed_mid_stream_leaves_a_whole_turn_or_a_clean_error_and_a_record(acct):
    url, turn_log = acct
    pids = _caller_pids()
    assert len(pids) == 2
    request_ids = [f"killed-{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
    texts: dict[str, str] = {}
    done, errored = set(), set()
    with httpx.Client(timeout=30) as client, contextlib.ExitStack() as streams:
        lines = {
            rid: streams.enter_context(client.stream(
                "POST", f"{url}/v1/chat/completions", headers={"x-request-id": rid},
                json={"model": "acct-long", "stream": True, "messages": USER})).iter_lines()
            for rid in request_ids
        }
        for rid in request_ids:  # every stream has words before the kill
            texts[rid] = ""
            for line in lines[rid]:
                if line.startswith("data: {") and '"content":"w' in line:
                    texts[rid] += json.loads(line[6:])["choices"][0]["delta"]["content"]
                    break
        os.kill(pids[0], signal.SIGKILL)
        for rid in request_ids:
            for line in lines[rid]:
                if line == "data: [DONE]":
                    done.add(rid)
                elif line.startswith("data: {"):
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        errored.add(rid)
                    elif chunk.get("choices"):
                        texts[rid] += chunk["choices"][0]["delta"].get("content") or ""
    whole = " ".join(f"w{i}" for i in range(1, 61))
    for rid in request_ids:
        # The stream ends with [DONE], never a broken body; its text is whole,
        # or a gap-free prefix followed by an error event.
        assert rid in done, rid
        assert whole.startswith(texts[rid])
        assert (texts[rid] == whole) != (rid in errored), (rid, texts[rid], errored)
    records = wait_for_records(turn_log, set(request_ids), timeout_s=30)
    assert set(records) == set(request_ids)  # one record per turn, the lost ones too
    for rid, record in records.items():
        assert (record["status"] == "ok") == (texts[rid] == whole)
    # The killed replica was serving some of them (Serve spreads the four
    # over both), and those were carried over to the other caller.
    carried = [rid for rid, r in records.items() if any("carried over" in note for note in r["request_notes"])]
    assert carried and all(records[rid]["status"] == "ok" for rid in carried)
    assert wait_until(lambda: all(e["in_flight"] == 0 for e in routing(url).values()), timeout_s=5.0)
