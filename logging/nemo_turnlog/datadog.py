"""Datadog export: each turn as a log, and TTFT and total latency as distributions.

Logs go to the logs intake API, ``POST https://http-intake.logs.{site}/api/v2/logs``
with the ``DD-API-KEY`` header and a JSON array of log objects (at most
1,000 per request and 5 MB; we send ``max_batch_turns``, default 500).
Each log has the reserved attributes ``ddsource`` (``nemo-router``),
``service``, ``hostname``, ``ddtags`` (``model_group:..,endpoint:..,
provider:..,status:..``, ``conversation_id:..`` when the turn named a
conversation, plus ``tags``), ``message`` (one readable line),
``status`` (``error`` for failed turns, else ``info``: the log level),
``date`` (turn start) and ``duration`` (total latency in nanoseconds, the
standard attribute), and every turn-log column under ``turn`` (facets such
as ``@turn.ttft_s``).

Metrics, when ``send_metrics`` (default on), go to
``POST https://api.{site}/api/v1/distribution_points``: ``nemo.turn.ttft``
and ``nemo.turn.total`` in seconds, one series per model group, endpoint,
provider and status, all of a batch's values in one point. Distributions
(not ``/api/v2/series`` gauges, which have no distribution type) let
Datadog compute p50/p99 across replicas, and ``count:`` of them gives turn
counts and error rates. A failed metrics post does not resend the logs.
Metric series carry no conversation tag: one series per call would be
unbounded cardinality (a custom-metrics bill); filter logs by it instead.
"""

from __future__ import annotations

import socket
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import timezone
from typing import Any

import httpx

from nemo_turnlog.delivery import HttpPoster, Outbox, RetryPolicy, Secret
from nemo_turnlog.record import TurnRecord

__all__ = ["DatadogExporter", "datadog_distributions", "datadog_log"]

_SOURCE = "nemo-router"


def _tag_value(value: object) -> str:
    # Commas separate tags in ``ddtags``; Datadog lowercases and keeps ``:``.
    return str(value).replace(",", "_").replace(" ", "_")


def _turn_tags(record: TurnRecord) -> list[str]:
    pairs = [
        ("model_group", record.model_group),
        ("endpoint", record.endpoint or "none"),
        ("provider", record.provider or "none"),
        ("status", record.status),
    ]
    return [f"{k}:{_tag_value(v)}" for k, v in pairs]


def _conversation_tags(record: TurnRecord) -> list[str]:
    # Logs only: on metric series a per-call tag would be unbounded cardinality.
    return [] if record.conversation_id is None else [f"conversation_id:{_tag_value(record.conversation_id)}"]


def _turn_attributes(record: TurnRecord) -> dict[str, Any]:
    timestamp = record.timestamp if record.timestamp.tzinfo else record.timestamp.replace(tzinfo=timezone.utc)
    return {
        "request_id": record.request_id,
        "timestamp": timestamp.isoformat(),
        "model_group": record.model_group,
        "endpoint": record.endpoint,
        "provider": record.provider,
        "model": record.model,
        "streamed": record.streamed,
        "status": record.status,
        "http_status": record.http_status,
        "error_type": record.error_type,
        "ttft_s": record.ttft_s,
        "total_s": record.total_s,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "total_tokens": record.total_tokens,
        "fallback_count": record.fallback_count,
        "api_key_id": record.api_key_id,
        "cached_tokens": record.cached_tokens,
        "conversation_id": record.conversation_id,
        "conversation_turn": record.conversation_turn,
        "affinity": record.affinity,
        "tags": list(record.tags),
        "attempts": [
            {"endpoint": a.endpoint, "outcome": a.outcome, "duration_s": a.duration_s, "http_status": a.http_status}
            for a in record.attempts
        ],
    }


def _message(record: TurnRecord) -> str:
    served = f"via {record.endpoint}" if record.endpoint else "unserved"
    ttft = f"{record.ttft_s:.3f}s" if record.ttft_s is not None else "-"
    error = f" {record.error_type}" if record.error_type else ""
    return f"turn {record.status} {record.model_group} {served} ttft={ttft} total={record.total_s:.3f}s{error}"


def datadog_log(record: TurnRecord, *, service: str, hostname: str, tags: Sequence[str] = ()) -> dict[str, Any]:
    """One turn as a Datadog log object."""
    attributes = _turn_attributes(record)
    return {
        "ddsource": _SOURCE,
        "service": service,
        "hostname": hostname,
        "ddtags": ",".join([*_turn_tags(record), *_conversation_tags(record), *tags, *(_tag_value(t) for t in record.tags)]),
        "message": _message(record),
        "status": "error" if record.status == "error" else "info",
        "date": attributes["timestamp"],
        "duration": int(record.total_s * 1e9),
        "turn": attributes,
    }


def datadog_distributions(
    records: Iterable[TurnRecord], *, hostname: str, tags: Sequence[str] = (), now_s: float
) -> dict[str, Any]:
    """The ``distribution_points`` body for a batch: one point per series."""
    values: dict[tuple[str, tuple[str, ...]], list[float]] = defaultdict(list)
    for record in records:
        series_tags = (*_turn_tags(record), *tags)
        values[("nemo.turn.total", series_tags)].append(record.total_s)
        if record.ttft_s is not None:
            values[("nemo.turn.ttft", series_tags)].append(record.ttft_s)
    timestamp = int(now_s)
    series = [
        {"metric": metric, "type": "distribution", "host": hostname, "tags": list(series_tags), "points": [[timestamp, points]]}
        for (metric, series_tags), points in values.items()
    ]
    return {"series": series}


class DatadogExporter:
    """Sends turns to Datadog on its own thread (a ``TurnCallback``).

    ``site`` is the Datadog site (``datadoghq.com``, ``datadoghq.eu``,
    ``us5.datadoghq.com``, ...); ``logs_url`` and ``metrics_url`` override
    the derived URLs (proxies, tests). The API key is passed in, never read
    here, and never printed.
    """

    def __init__(
        self,
        api_key: str,
        *,
        site: str = "datadoghq.com",
        service: str = "nemo-router",
        hostname: str | None = None,
        tags: Sequence[str] = (),
        send_metrics: bool = True,
        logs_url: str | None = None,
        metrics_url: str | None = None,
        max_batch_turns: int = 500,
        max_queued_turns: int = 10_000,
        policy: RetryPolicy = RetryPolicy(),
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ):
        if not 1 <= max_batch_turns <= 1000:
            raise ValueError(f"the logs intake takes at most 1000 logs per request, got max_batch_turns={max_batch_turns}")
        self._api_key = Secret(api_key)
        self._logs_url = logs_url or f"https://http-intake.logs.{site}/api/v2/logs"
        self._metrics_url = (metrics_url or f"https://api.{site}/api/v1/distribution_points") if send_metrics else None
        self._service = service
        self._hostname = hostname or socket.gethostname()
        self._tags = tuple(tags)
        self._clock = clock
        self._poster = HttpPoster("datadog", policy=policy, timeout_s=timeout_s, transport=transport)
        self._outbox: Outbox[TurnRecord] = Outbox(
            self._deliver, name="datadog", max_batch=max_batch_turns, max_items=max_queued_turns
        )

    def on_turns(self, records: Sequence[TurnRecord]) -> None:
        self._outbox.put(records)

    def close(self, timeout_s: float = 10.0) -> None:
        self._outbox.close(timeout_s)
        self._poster.close()

    def stats(self) -> dict[str, int]:
        return self._outbox.stats()

    def __repr__(self) -> str:
        return f"DatadogExporter(logs_url={self._logs_url!r}, metrics_url={self._metrics_url!r})"

    def _deliver(self, records: list[TurnRecord]) -> bool:
        headers = {"DD-API-KEY": self._api_key.reveal()}
        logs = [datadog_log(r, service=self._service, hostname=self._hostname, tags=self._tags) for r in records]
        delivered = self._poster.post(self._logs_url, json=logs, headers=headers) is not None
        if self._metrics_url is not None:
            body = datadog_distributions(records, hostname=self._hostname, tags=self._tags, now_s=self._clock())
            self._poster.post(self._metrics_url, json=body, headers=headers)
        return delivered
