"""Two routers on one machine (issue 14): a second ``nemo-router run`` beside
the test session's router, started from a folder whose subfolders are named
like the router's own packages, serves its own config on its own ports while
the first keeps serving its own; stopped, it frees its ports."""

from __future__ import annotations

import signal
import socket
import subprocess
import time

import httpx
import pytest
import yaml
from conftest import ROUTER_PORT
from helpers import AUTH, start_router_process

pytestmark = pytest.mark.ray

DECOYS = ("router", "deployments", "turnlog", "nemo_turnlog", "simprovider")


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_a_second_router_beside_the_first_serves_its_own_config_and_frees_its_ports(router, simulator, tmp_path):
    from deployments.serve_ports import serve_port_environment

    # Below the test router's ports, outside the kernel's ephemeral range
    # (an outgoing connection's local port took a random "free" one's
    # HAProxy metrics port once) and outside Ray's worker ports (10002-19999).
    port = ROUTER_PORT - 1500
    while any(listening(p) for p in (port, port + 1, port + 3, port + 4)):
        port -= 400
        assert port > 1024, "no free block of ports below the test router's"
    # Folders named like the router's packages, each a package that fails on
    # import: Ray puts the driver's working directory on every worker's path.
    workdir = tmp_path / "user-project"
    for name in DECOYS:
        (workdir / name).mkdir(parents=True)
        (workdir / name / "__init__.py").write_text("raise ImportError('a user folder, not the router')\n")
    config = {
        "server": {"port": port},
        "model_groups": {"second-only": {"endpoints": [
            {"name": "second-sim", "base_url": simulator.base_url("backup"), "model": "sim-model"}]}},
        "turn_log": {"sink": "local", "path": str(tmp_path / "second-turnlog"), "flush_interval_s": 0.5},
        "deployments": {"tracker_name": "nemo-tracker-second"},
        "cache": {"enabled": False},
        "metrics": {"enabled": False},
    }
    (tmp_path / "second.yaml").write_text(yaml.safe_dump(config))
    log_path = tmp_path / "second.log"
    process = start_router_process(tmp_path / "second.yaml", workdir, log_path)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert process.poll() is None, log_path.read_text()[-3000:]
        body = {"messages": [{"role": "user", "content": "hi"}]}
        for _ in range(5):
            second = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={**body, "model": "second-only"}, timeout=20)
            assert second.status_code == 200 and second.headers["x-nemo-endpoint"] == "second-sim"
            first = httpx.post(f"{router}/v1/chat/completions", json={**body, "model": "voice-fast"}, headers=AUTH, timeout=20)
            assert first.status_code == 200 and first.headers["x-nemo-endpoint"].startswith("sim-")
            # Each router knows only its own models.
            assert httpx.post(f"{router}/v1/chat/completions", json={**body, "model": "second-only"},
                              headers=AUTH, timeout=20).status_code == 404
        derived = serve_port_environment(port)
        assert listening(int(derived["RAY_SERVE_HAPROXY_METRICS_PORT"]))
        assert listening(int(serve_port_environment(ROUTER_PORT)["RAY_SERVE_HAPROXY_METRICS_PORT"]))
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (listening(port) or listening(port + 3)):
        time.sleep(0.5)
    assert not listening(port) and not listening(port + 3), "the stopped router left a listener behind"
