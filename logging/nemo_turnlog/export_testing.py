"""Test support for exporters and alerts: a real local HTTP receiver and sample turns.

``LocalHttpReceiver`` is a ``ThreadingHTTPServer`` on ``127.0.0.1`` (a free
port) that records every request and answers from a per-path script, then
with ``default_status``::

    with LocalHttpReceiver(script={"/api/v2/logs": [503]}, default_status=202) as receiver:
        ...  # point an exporter at receiver.url + "/api/v2/logs"
        first, second = receiver.wait_for(2)

``sample_turn(**overrides)`` builds a plausible ``TurnRecord``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from nemo_turnlog.record import AttemptRecord, TurnRecord

__all__ = ["LocalHttpReceiver", "ReceivedRequest", "sample_turn"]


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # names lowercased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class LocalHttpReceiver:
    """Records requests; answers each path from its script, then ``default_status``."""

    def __init__(
        self,
        script: Mapping[str, Sequence[int | tuple[int, Any]]] | None = None,
        *,
        default_status: int = 200,
        default_body: Any = None,
    ):
        self.requests: list[ReceivedRequest] = []
        self._script = {path: deque(answers) for path, answers in (script or {}).items()}
        self._default = (default_status, {} if default_body is None else default_body)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="http-receiver", daemon=True
        )

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[ReceivedRequest]:
        """The first ``count`` requests, waiting up to ``timeout_s`` for them."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return self.requests[:count]
            time.sleep(0.01)
        raise AssertionError(f"expected {count} requests within {timeout_s} s, got {len(self.requests)}")

    def __enter__(self) -> LocalHttpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, request: ReceivedRequest) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(request)
            answers = self._script.get(request.path)
            answer = answers.popleft() if answers else self._default
        return (answer, {}) if isinstance(answer, int) else answer

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, payload = receiver._answer(ReceivedRequest("POST", self.path, headers, body))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output quiet

        return Handler


def sample_turn(**overrides: Any) -> TurnRecord:
    """A served, streamed turn on ``voice-fast`` / ``sim-fast``; override any field."""
    fields: dict[str, Any] = {
        "request_id": f"req-{uuid.uuid4().hex[:12]}",
        "timestamp": datetime(2025, 1, 31, 7, 30, tzinfo=timezone.utc),
        "model_group": "voice-fast",
        "endpoint": "sim-fast",
        "provider": "openai",
        "model": "sim-model",
        "streamed": True,
        "status": "ok",
        "http_status": 200,
        "error_type": None,
        "ttft_s": 0.12,
        "total_s": 0.8,
        "prompt_tokens": 40,
        "completion_tokens": 12,
        "total_tokens": 52,
        "attempts": [AttemptRecord("sim-fast", "ok", 0.8, 200)],
        "fallback_count": 0,
        "api_key_id": "key-1",
        "tags": ["voice"],
    }
    return TurnRecord(**{**fields, **overrides})
