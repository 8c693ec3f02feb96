"""A clean stop (issue 14): ``nemo-router run`` stopped by SIGINT to its
process group, as a terminal's Ctrl-C sends it (the design card's shape), or
SIGTERM to the process alone (the lean shape) while turns stream.

At the signal, 8 streams that can finish within the grace period are in
flight, and 2 that cannot. The 8 complete, whole; the 2 end with the
router's ``router_stopping`` SSE error and ``[DONE]`` after what they had;
a turn sent during the drain is refused with a 503 in OpenAI's format; the
turn log holds one row for each of the 10 (the stopped ones saying so);
the process exits within the grace period plus 5 s; and nothing of it is
left listening (HAProxy included).

Each case starts a router of its own (its own Ray), on ports outside the
session router's and Ray's worker range.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml
from helpers import start_router_process

pytestmark = pytest.mark.ray

GRACE_S = 4.0
READY = "Ctrl-C (or SIGTERM) stops it"
SHORT, LONG = 8, 2
PORTS = {"caller": 21500, "ingress": 21850}  # each uses P..P+4 and P+100..P+299


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Stream:
    """One streamed turn read on a thread: its text, its events, and when
    its first word arrived."""

    def __init__(self, url: str, group: str):
        self.url, self.group = url, group
        self.first_word = threading.Event()
        self.text, self.errors, self.done, self.status = "", [], False, None

    def run(self) -> "Stream":
        body = {"model": self.group, "stream": True, "messages": [{"role": "user", "content": "count"}]}
        with httpx.stream("POST", f"{self.url}/v1/chat/completions", json=body, timeout=60) as response:
            self.status = response.status_code
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[len("data: "):]
                if data == "[DONE]":
                    self.done = True
                    continue
                event = json.loads(data)
                if "error" in event:
                    self.errors.append(event["error"])
                    continue
                for choice in event.get("choices", []):
                    self.text += choice.get("delta", {}).get("content") or ""
                if self.text:
                    self.first_word.set()
        return self


def _words(n: int) -> str:
    """What the simulator streams for ``tokens: n`` (its words, spaced)."""
    return " ".join(f"w{i}" for i in range(1, n + 1))


def _start_router(tmp_path: Path, simulator, shape: str) -> tuple[subprocess.Popen, int, Path]:
    port = PORTS[shape]
    assert not listening(port), f"port {port} is taken: cannot test a stop there"
    turn_log = tmp_path / "turnlog"
    endpoint = lambda profile: {"name": f"stop-{profile}", "base_url": simulator.base_url(profile), "model": "sim-model"}  # noqa: E731
    config = {
        "server": {"port": port, "stop_grace_s": GRACE_S},
        "model_groups": {
            "short": {"endpoints": [endpoint("stop-short")]},
            "long": {"endpoints": [endpoint("stop-long")], "timeouts": {"total_s": 120}},
        },
        "turn_log": {"sink": "local", "path": str(turn_log), "flush_interval_s": 3600},  # only the stop flushes
        "deployments": {"tracker_name": f"nemo-tracker-stop-{shape}", "upstream_calls": shape},
        "cache": {"enabled": False},
        "metrics": {"enabled": False},
    }
    (tmp_path / "stop.yaml").write_text(yaml.safe_dump(config))
    process = start_router_process(tmp_path / "stop.yaml", tmp_path, tmp_path / "router.log")
    # Ready for a signal once it says how it stops (its handlers are set
    # then; /health answers a little earlier, while it is still starting).
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None and READY not in (tmp_path / "router.log").read_text():
        time.sleep(0.5)
    assert process.poll() is None, (tmp_path / "router.log").read_text()[-3000:]
    assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    return process, port, turn_log


@pytest.mark.parametrize(("shape", "signum"), [("caller", signal.SIGINT), ("ingress", signal.SIGTERM)])
def test_a_stop_drains_turns_in_flight_and_leaves_nothing_behind(tmp_path, simulator, shape, signum):
    from nemo_turnlog import read_turn_log

    process, port, turn_log = _start_router(tmp_path, simulator, shape)
    url = f"http://127.0.0.1:{port}"
    descendants: list[psutil.Process] = []
    try:
        streams = [Stream(url, "short") for _ in range(SHORT)] + [Stream(url, "long") for _ in range(LONG)]
        with concurrent.futures.ThreadPoolExecutor(len(streams)) as pool:
            futures = [pool.submit(s.run) for s in streams]
            for stream in streams:
                assert stream.first_word.wait(30), "a stream never started"
            descendants = psutil.Process(process.pid).children(recursive=True)
            signalled = time.monotonic()
            if signum == signal.SIGINT:  # as a terminal's Ctrl-C: the whole process group
                os.killpg(process.pid, signum)
            else:  # as a process manager's stop: the process alone
                process.send_signal(signum)
            refused, served_before = _a_turn_sent_during_the_drain(url)
            for future in futures:
                future.result(timeout=GRACE_S + 30)
        process.wait(timeout=GRACE_S + 60)
        stop_s = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
    log_text = (tmp_path / "router.log").read_text()
    assert process.returncode == 0, log_text[-3000:]

    for stream in streams[:SHORT]:  # within the grace period: whole
        assert (stream.status, stream.errors, stream.done) == (200, [], True)
        assert stream.text == _words(20)
    for stream in streams[SHORT:]:  # past it: what they had, then the router's error
        assert stream.status == 200 and stream.done
        assert [e["code"] for e in stream.errors] == ["router_stopping"]
        assert 0 < len(stream.text) < len(_words(150)) and _words(150).startswith(stream.text)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "router_stopping" and refused.headers["retry-after"]

    rows = read_turn_log(turn_log).to_pylist()
    assert len(rows) == SHORT + LONG + served_before
    assert sorted(r["error_type"] or "ok" for r in rows) == ["RouterStopping"] * LONG + ["ok"] * (SHORT + served_before)
    # The stop's report. A turn served between the signal and the drain (the
    # router looks for a signal every half second) may or may not have been
    # counted in flight, depending on whether its runner had started.
    report = re.search(r"(\d+) turns in flight at the stop, (\d+) finished, (\d+) ended by the router", log_text)
    assert report is not None, log_text[-2000:]
    in_flight, finished, ended = map(int, report.groups())
    assert ended == LONG and in_flight == finished + ended
    assert SHORT + LONG <= in_flight <= SHORT + LONG + served_before

    assert stop_s < GRACE_S + 5, f"the stop took {stop_s:.1f} s"
    assert not any(listening(p) for p in (port, port + 1, port + 2, port + 3, port + 4)), "a listener was left behind"
    survivors = [p.pid for p in descendants if p.is_running()]
    assert survivors == [], f"processes left behind: {survivors}"


def _a_turn_sent_during_the_drain(url: str) -> tuple[httpx.Response, int]:
    """Turns sent after the signal: once the drain has begun (the router
    notices the signal within half a second), refused. The refusal, and
    how many were served before it (each is logged)."""
    body = {"model": "short", "messages": [{"role": "user", "content": "hi"}]}
    deadline = time.monotonic() + GRACE_S
    served = 0
    while time.monotonic() < deadline:
        response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
        if response.status_code == 503:
            return response, served
        assert response.status_code == 200, response.text
        served += 1
        time.sleep(0.1)
    raise AssertionError("no turn was refused while the router drained")
