"""Best-effort HTTP delivery for exporters and alert webhooks, off the turn's path.

Three small pieces, shared by ``nemo_turnlog.langfuse``, ``nemo_turnlog.datadog`` and
``nemo_turnlog.alerts``:

- ``Secret`` holds an API key or a webhook URL; its ``repr`` and ``str``
  are ``'***'``, so no object that holds one can print it by accident.
- ``HttpPoster`` POSTs one body with bounded retries: exponential backoff
  with jitter on connection errors, timeouts, 408, 429 and 5xx (honouring a
  ``Retry-After`` in seconds, capped at the backoff ceiling); any other
  status gives up at once. It sends through an ``httpx`` *transport*, not a
  ``Client``: the client logs every request URL at INFO, and a Slack
  webhook URL is itself a secret. Log lines name only the ``label`` and the
  status or exception class, never a URL, header or body.
- ``Outbox`` is a bounded queue drained by one daemon thread that hands
  items to a ``deliver`` function in batches. ``put`` never blocks; beyond
  ``max_items`` the oldest items are dropped and counted.

Exports are at-most-once after retries: a batch that still fails is dropped
and counted. The Parquet turn log remains the record of every turn.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

__all__ = ["HttpPoster", "Outbox", "RetryPolicy", "Secret"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Secret:
    """A string that never shows itself: ``reveal()`` is the only way out."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        if not value:
            raise ValueError("a secret must not be empty")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_attempts`` tries in all (default 4); the wait before retry ``n``
    (from 0) is ``initial_backoff_s * 2**n`` capped at ``max_backoff_s``
    (defaults 0.5 s and 8 s), scaled by a random factor in [0.5, 1] so that
    many replicas do not retry in step."""

    max_attempts: int = 4
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.initial_backoff_s < 0 or self.max_backoff_s < self.initial_backoff_s:
            raise ValueError(f"invalid retry policy: {self}")

    def backoff_s(self, retry: int, rng: random.Random) -> float:
        return min(self.max_backoff_s, self.initial_backoff_s * 2**retry) * (0.5 + rng.random() / 2)


def _retryable(status: int) -> bool:
    return status in (408, 429) or status >= 500


class HttpPoster:
    """POSTs bodies to one service with retries; see the module docstring.

    ``transport`` defaults to a pooled ``httpx.HTTPTransport``; tests pass
    ``httpx.MockTransport``. ``sleep`` and ``rng`` are injectable.
    """

    def __init__(
        self,
        label: str,
        *,
        policy: RetryPolicy = RetryPolicy(),
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        self.label = label
        self._policy = policy
        self._timeout = httpx.Timeout(timeout_s).as_dict()
        self._transport = transport or httpx.HTTPTransport()
        self._sleep = sleep
        self._rng = rng or random.Random()

    def post(self, url: str, *, json: Any, headers: Mapping[str, str]) -> httpx.Response | None:
        """The 2xx response (body read), or None once the policy gives up."""
        for attempt in range(self._policy.max_attempts):
            retry_after_s = None
            try:
                response = self._send(url, json, headers)
            except httpx.TransportError as exc:
                reason = type(exc).__name__
            else:
                if response.is_success:
                    return response
                if not _retryable(response.status_code):
                    logger.warning("%s: POST refused with HTTP %d; dropping the batch", self.label, response.status_code)
                    return None
                reason = f"HTTP {response.status_code}"
                retry_after_s = _retry_after_s(response)
            if attempt + 1 == self._policy.max_attempts:
                break
            wait_s = self._policy.backoff_s(attempt, self._rng)
            if retry_after_s is not None:
                wait_s = min(max(wait_s, retry_after_s), self._policy.max_backoff_s)
            logger.info("%s: POST failed (%s); retry %d in %.2f s", self.label, reason, attempt + 1, wait_s)
            self._sleep(wait_s)
        logger.warning("%s: POST failed (%s) %d times; dropping the batch", self.label, reason, self._policy.max_attempts)
        return None

    def close(self) -> None:
        self._transport.close()

    def __repr__(self) -> str:
        return f"HttpPoster(label={self.label!r})"

    def _send(self, url: str, body: Any, headers: Mapping[str, str]) -> httpx.Response:
        request = httpx.Request("POST", url, json=body, headers=headers, extensions={"timeout": self._timeout})
        response = self._transport.handle_request(request)
        try:
            response.read()
        finally:
            response.close()
        return response


def _retry_after_s(response: httpx.Response) -> float | None:
    try:
        return max(float(response.headers["retry-after"]), 0.0)
    except (KeyError, ValueError):
        return None  # absent, or an HTTP date: plain backoff is good enough


class Outbox(Generic[T]):
    """A bounded queue that one daemon thread drains into ``deliver``.

    ``deliver(batch)`` gets at most ``max_batch`` items (default 100) and
    returns whether they were delivered; it must not raise (what it raises
    is logged and counted as a failure). The thread wakes as soon as items
    arrive. ``stats()``: ``queued``, ``delivered``, ``failed`` (items in
    batches ``deliver`` gave up on), ``dropped`` (no room, or after
    ``close``).
    """

    def __init__(self, deliver: Callable[[list[T]], bool], *, name: str, max_batch: int = 100, max_items: int = 10_000):
        if not 1 <= max_batch <= max_items:
            raise ValueError(f"need 1 <= max_batch <= max_items, got {max_batch} and {max_items}")
        self._deliver = deliver
        self._name = name
        self._max_batch = max_batch
        self._max_items = max_items
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._counts = dict.fromkeys(("delivered", "failed", "dropped"), 0)
        self._thread = threading.Thread(target=self._run, name=f"outbox-{name}", daemon=True)
        self._thread.start()

    def put(self, items: Iterable[T]) -> None:
        """Queue items for delivery; never blocks on I/O and never raises."""
        with self._lock:
            if self._closed:
                self._counts["dropped"] += sum(1 for _ in items)
                return
            self._items.extend(items)
            overflow = max(len(self._items) - self._max_items, 0)
            for _ in range(overflow):
                self._items.popleft()
            self._counts["dropped"] += overflow
        self._wake.set()

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (waiting at most ``timeout_s``), then stop."""
        with self._lock:
            self._closed = True
        self._wake.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.warning("%s: still delivering after %.1f s; leaving the rest", self._name, timeout_s)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {**self._counts, "queued": len(self._items)}

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while batch := self._take():
                self._deliver_batch(batch)
            with self._lock:
                if self._closed and not self._items:
                    return

    def _take(self) -> list[T]:
        with self._lock:
            return [self._items.popleft() for _ in range(min(self._max_batch, len(self._items)))]

    def _deliver_batch(self, batch: list[T]) -> None:
        try:
            ok = self._deliver(batch)
        except Exception as exc:  # a bug in one exporter must not kill its thread
            logger.error("%s: delivery raised %s; dropping %d items", self._name, type(exc).__name__, len(batch))
            ok = False
        with self._lock:
            self._counts["delivered" if ok else "failed"] += len(batch)
