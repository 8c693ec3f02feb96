"""LiteLLM proxy, run beside the router for side-by-side benchmarks.

LiteLLM is installed from PyPI into its own virtual environment (never into
the router's: its dependency pins differ), then started as a proxy on a
loopback port with a config of our choosing: the same simulated provider as
the router, and for failover benchmarks LiteLLM's own fallbacks.

    with litellm_proxy(model_list, port=4001, log_path=...) as proxy:
        proxy.base_url  # http://127.0.0.1:4001/v1; send proxy.headers
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from overhead import wait_ready

__all__ = ["DEFAULT_VENV", "MASTER_KEY", "LiteLLMProxy", "ensure_litellm", "litellm_proxy", "openai_deployment"]

DEFAULT_VENV = Path(os.environ.get("NEMO_BENCH_LITELLM_VENV", Path(__file__).resolve().parent / ".litellm-venv"))
MASTER_KEY = "sk-bench-litellm-master"  # the proxy insists on one; loopback only
START_TIMEOUT_S = 300


@dataclass(frozen=True)
class LiteLLMProxy:
    port: int
    version: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {MASTER_KEY}"}


def ensure_litellm(venv: Path = DEFAULT_VENV) -> Path:
    """The ``litellm`` executable, installing ``litellm[proxy]`` first if the
    venv does not have it yet (a few minutes, once)."""
    executable = venv / "bin" / "litellm"
    if not executable.exists():
        print(f"installing litellm[proxy] into {venv} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "litellm[proxy]"], check=True)
    return executable


def installed_version(venv: Path = DEFAULT_VENV) -> str:
    out = subprocess.run([str(venv / "bin" / "pip"), "show", "litellm"], capture_output=True, text=True, check=True)
    return next((line.split(":", 1)[1].strip() for line in out.stdout.splitlines() if line.startswith("Version:")), "?")


def openai_deployment(model_name: str, api_base: str, model: str = "sim-model", **params) -> dict:
    """One ``model_list`` entry for an OpenAI-compatible upstream."""
    return {"model_name": model_name, "litellm_params": {"model": f"openai/{model}", "api_base": api_base, "api_key": "sk-sim", **params}}


@contextlib.contextmanager
def litellm_proxy(
    model_list: list[dict],
    *,
    port: int,
    log_path: Path,
    router_settings: dict | None = None,
    litellm_settings: dict | None = None,
    workers: int = 1,
    venv: Path = DEFAULT_VENV,
) -> Iterator[LiteLLMProxy]:
    """Start LiteLLM proxy on 127.0.0.1:``port``; stop it (and its workers) on exit."""
    executable = ensure_litellm(venv)
    config = {
        "model_list": model_list,
        "general_settings": {"master_key": MASTER_KEY},
        # No spend logs, no callbacks: the leanest LiteLLM for a fair comparison.
        "litellm_settings": {"drop_params": True, "set_verbose": False, **(litellm_settings or {})},
    }
    if router_settings:
        config["router_settings"] = router_settings
    config_path = log_path.with_suffix(".yaml")
    config_path.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch from the internet at start-up
        "LITELLM_LOG": "ERROR",
        "DISABLE_ADMIN_UI": "True",
    }
    log = open(log_path, "w")
    process = subprocess.Popen(
        [str(executable), "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port), "--num_workers", str(workers)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_ready(process, f"http://127.0.0.1:{port}/health/liveliness", log_path, what="litellm", timeout_s=START_TIMEOUT_S)
        yield LiteLLMProxy(port, installed_version(venv))
    finally:
        _stop(process)
        log.close()


def _stop(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
