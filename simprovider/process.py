"""Running the simulator as a child process, and driving its admin API.

    with start_simulator({"slow": {"ttft_ms": 250}}) as sim:
        client = openai.OpenAI(base_url=sim.base_url("slow"), api_key="x")
        sim.set_behavior("slow", failure="http_503", failure_count=1)

A separate process keeps the simulator's event loop and CPU apart from the
code under test, as a real upstream would be.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from types import TracebackType
from typing import Any

import httpx

from .spec import format_profile_spec

__all__ = ["SimulatorError", "SimulatorProcess", "start_simulator"]

_POLL_INTERVAL_S = 0.05
_STOP_TIMEOUT_S = 5.0
_ADMIN_TIMEOUT_S = 5.0


class SimulatorError(RuntimeError):
    """The simulator did not start, or its admin API refused a call."""


class SimulatorProcess:
    """A running `python -m simprovider` child and a client for its admin API.

    Use as a context manager, or call `stop()`. Admin calls time out after
    5 s; a refused call raises `SimulatorError`.
    """

    def __init__(self, popen: subprocess.Popen[bytes], host: str, port: int) -> None:
        self.popen = popen
        self.host = host
        self.port = port
        self._admin = httpx.Client(base_url=self.url, timeout=_ADMIN_TIMEOUT_S)

    @property
    def url(self) -> str:
        """Root URL, e.g. `http://127.0.0.1:9100`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def base_url(self, profile: str = "default") -> str:
        """OpenAI base URL of one profile, e.g. `http://127.0.0.1:9100/fast/v1`."""
        return f"{self.url}/{profile}/v1"

    def root_url(self, profile: str = "default") -> str:
        """Anthropic and Gemini base URL of one profile, e.g.
        `http://127.0.0.1:9100/fast` (their paths start with `/v1/messages`,
        `/v1beta/models/...`)."""
        return f"{self.url}/{profile}"

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        try:
            response = self._admin.request(method, path, json=json)
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            raise SimulatorError(f"{method} {path} refused: {exc.response.text}") from exc
        except httpx.HTTPError as exc:
            raise SimulatorError(f"{method} {path} failed: {exc!r}") from exc
        return response.json()

    def set_behavior(self, profile: str, **fields: Any) -> dict[str, Any]:
        """Merge `fields` into the profile (created if missing); returns the result."""
        return self._call("PUT", f"/_sim/profiles/{profile}", json=fields)

    def profiles(self) -> dict[str, dict[str, Any]]:
        return self._call("GET", "/_sim/profiles")

    def stats(self) -> dict[str, dict[str, int]]:
        """`{profile: {"requests": int, "in_flight": int}}`."""
        return self._call("GET", "/_sim/stats")

    def reset(self) -> None:
        """Back to the start-up behaviours, counters zeroed."""
        self._call("POST", "/_sim/reset")

    def stop(self) -> None:
        """Terminate, wait up to 5 s, then kill. Safe to call twice."""
        self._admin.close()
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=_STOP_TIMEOUT_S)

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start_simulator(
    profiles: dict[str, dict[str, Any]] | None = None,
    port: int = 0,
    host: str = "127.0.0.1",
    timeout_s: float = 20,
) -> SimulatorProcess:
    """Start `python -m simprovider` and wait until `/health` answers.

    Args:
        profiles: Behavior fields by profile name; these are also what
            `reset()` returns to. `default` exists regardless.
        port: TCP port; 0 picks a free one first.
        host: Bind address; loopback by default.
        timeout_s: Longest wait for the server to answer, in seconds.

    Raises:
        SimulatorError: if the process exits or does not answer in time.
    """
    port = port or _free_port(host)
    command = [sys.executable, "-m", "simprovider", "--host", host, "--port", str(port)]
    for name, fields in (profiles or {}).items():
        command += ["--profile", format_profile_spec(name, fields)]
    # stdout only carries the one "listening" line; nobody reads it here, so
    # it goes nowhere rather than into a pipe that could fill up.
    # A session of its own: a terminal's Ctrl-C (sent to the whole foreground
    # process group) must not kill the providers while the router drains
    # the turns they are serving; whoever started it stops it (``stop``).
    popen = subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)
    sim = SimulatorProcess(popen, host, port)
    try:
        _wait_healthy(sim, timeout_s)
    except BaseException:
        sim.stop()
        raise
    return sim


def _wait_healthy(sim: SimulatorProcess, timeout_s: float) -> None:
    deadline_s = time.monotonic() + timeout_s
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline_s:
            code = sim.popen.poll()
            if code is not None:
                raise SimulatorError(f"simulator exited with code {code} before answering")
            try:
                if client.get(f"{sim.url}/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(_POLL_INTERVAL_S)
    raise SimulatorError(f"simulator at {sim.url} did not answer /health within {timeout_s} s")
