"""Small helpers shared by the end-to-end tests."""

from __future__ import annotations

import time

# Client keys of the test router (declared by hash in its config).
TEST_KEY = "sk-test-all-models"
NARROW_KEY = "sk-test-voice-fast-only"
LIMITED_KEY = "sk-test-three-per-minute"
ADMIN_KEY = "sk-test-admin"
SCRAPE_KEY = "sk-test-scrape-only"  # metrics.scrape.key_hash: reads /metrics, nothing else
AUTH = {"authorization": f"Bearer {TEST_KEY}"}
# Canaries for the secrets suite (tests/test_e2e_secrets.py): a provider key
# the router sends upstream, and a client key; neither may appear in any
# response, log, metric or turn record. Their tails are letters that no id,
# hash or timestamp is made of.
CANARY_PROVIDER_KEY = "sk-canaryprov-7f3e9a1c5b2d8e40-QZXWVUT"
CANARY_PROVIDER_KEY_ENV = "NEMO_TEST_CANARY_PROVIDER_KEY"
CANARY_CLIENT_KEY = "sk-canaryclnt-2c8d4e6f1a3b5c79-JKQXZVW"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


def wait_for_records(path, request_ids: set[str], timeout_s: float = 15.0) -> dict[str, dict]:
    from nemo_turnlog import read_turn_log

    deadline = time.monotonic() + timeout_s
    rows: dict[str, dict] = {}
    while time.monotonic() < deadline:
        table = read_turn_log(path)
        rows = {r["request_id"]: r for r in table.to_pylist() if r["request_id"] in request_ids}
        if len(rows) == len(request_ids):
            return rows
        time.sleep(0.25)
    return rows


SIM_MODELS = {"openai": "sim-model", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}


def sim_endpoint(simulator, name: str, profile: str, provider: str = "openai", **extra) -> dict:
    """An endpoint of the simulated provider's ``profile``, in ``provider``'s wire format."""
    url = simulator.base_url(profile) if provider == "openai" else simulator.root_url(profile)
    return {"name": name, "provider": provider, "base_url": url, "model": SIM_MODELS[provider]} | extra


def start_router_process(config_path, cwd, log_path):
    """``nemo-router run --config`` as a user runs it (the console script,
    so the working directory is not first on the driver's path), in a
    session of its own, with nothing of the test session's Ray or Serve
    settings in its environment; its output goes to ``log_path``."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_SERVE_", "RAY_ADDRESS"))}
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "nemo-router"), "run", "--config", str(config_path)],
            cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )


def replica_pids(app: str, deployment: str) -> list[int]:
    """The PIDs of an app's replicas of ``deployment``, by the process title
    Ray gives each actor (only those: a test ends nothing else)."""
    import os

    title = f"ray::ServeReplica:{app}:{deployment}".encode()
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    if f.read().startswith(title):
                        pids.append(int(entry.name))
            except OSError:
                continue
    return pids
