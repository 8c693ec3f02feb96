"""Langfuse export: each turn as a trace with one generation.

Uses Langfuse's public batch ingestion API (``POST {host}/api/public/ingestion``,
HTTP basic auth with the public key as user and the secret key as password,
body ``{"batch": [event, ...]}``). Each event is an envelope ``{id, type,
timestamp, body}``; per turn we send:

- ``trace-create``: ``id`` = the request id, ``timestamp`` = turn start,
  ``name`` = the model group, ``tags``, ``metadata``, and ``sessionId`` =
  the conversation id when the turn named one (so a call is one Langfuse
  session, its turns in order);
- ``generation-create``: ``id`` = ``<request id>:generation``, ``traceId``,
  ``name``, ``model``, ``startTime`` / ``endTime`` (start + ``total_s``),
  ``completionStartTime`` (start + ``ttft_s``: Langfuse shows the gap as
  time to first token), ``usageDetails`` and the older ``usage``
  (``{input, output, total}`` tokens; servers that know ``usageDetails``
  prefer it), ``costDetails`` ``{total}`` in USD when the record has a
  ``cost_usd``, ``level`` ``ERROR`` with ``statusMessage`` for failed turns,
  and ``metadata`` with endpoint, provider, status, fallbacks and attempts.

Envelope ids are derived from the request id (uuid5), so a batch sent twice
is deduplicated by Langfuse. No message content is sent (the turn record
holds none). Langfuse answers 207 with per-event errors for bad events;
those are counted and logged, not retried (they would fail again).

Langfuse now recommends its OpenTelemetry endpoint for new SDKs; the batch
ingestion API remains documented and served, and needs no OTel stack here.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from nemo_turnlog.delivery import HttpPoster, Outbox, RetryPolicy, Secret
from nemo_turnlog.record import TurnRecord

__all__ = ["LangfuseExporter", "langfuse_events"]

logger = logging.getLogger(__name__)

_EVENT_IDS = uuid.UUID("5f0c1f4e-7a8e-4c1e-9a57-6e656d6f2d72")  # namespace for uuid5 event ids


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _usage(record: TurnRecord) -> dict[str, int]:
    tokens = {"input": record.prompt_tokens, "output": record.completion_tokens, "total": record.total_tokens}
    return {k: v for k, v in tokens.items() if v is not None}


def _metadata(record: TurnRecord) -> dict[str, Any]:
    return {
        "model_group": record.model_group,
        "endpoint": record.endpoint,
        "provider": record.provider,
        "status": record.status,
        "http_status": record.http_status,
        "error_type": record.error_type,
        "streamed": record.streamed,
        "fallback_count": record.fallback_count,
        "ttft_s": record.ttft_s,
        "total_s": record.total_s,
        "api_key_id": record.api_key_id,
        "cached_tokens": record.cached_tokens,
        "conversation_id": record.conversation_id,
        "conversation_turn": record.conversation_turn,
        "affinity": record.affinity,
        "attempts": [
            {"endpoint": a.endpoint, "outcome": a.outcome, "duration_s": a.duration_s, "http_status": a.http_status}
            for a in record.attempts
        ],
    }


def _generation(record: TurnRecord) -> dict[str, Any]:
    start = record.timestamp
    body: dict[str, Any] = {
        "id": f"{record.request_id}:generation",
        "traceId": record.request_id,
        "name": record.endpoint or "unserved",
        "model": record.model,
        "startTime": _iso(start),
        "endTime": _iso(start + timedelta(seconds=record.total_s)),
        "metadata": _metadata(record),
        "level": "ERROR" if record.status == "error" else "DEFAULT",
    }
    if record.ttft_s is not None:
        body["completionStartTime"] = _iso(start + timedelta(seconds=record.ttft_s))
    usage = _usage(record)
    if usage:
        body["usageDetails"] = usage
        body["usage"] = {**usage, "unit": "TOKENS"}
    cost_usd = getattr(record, "cost_usd", None)  # a later schema column; absent today
    if cost_usd is not None:
        body["costDetails"] = {"total": cost_usd}
    if record.error_type:
        body["statusMessage"] = record.error_type
    return body


def _envelope(kind: str, body: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {"id": str(uuid.uuid5(_EVENT_IDS, f"{kind}:{body['id']}")), "type": kind, "timestamp": _iso(now), "body": body}


def langfuse_events(record: TurnRecord, *, environment: str | None = None, now: datetime | None = None) -> list[dict]:
    """The ``trace-create`` and ``generation-create`` events for one turn."""
    now = now or datetime.now(timezone.utc)
    trace: dict[str, Any] = {
        "id": record.request_id,
        "timestamp": _iso(record.timestamp),
        "name": record.model_group,
        "tags": list(record.tags),
        "metadata": {"model_group": record.model_group, "status": record.status, "endpoint": record.endpoint},
    }
    if record.conversation_id is not None:
        trace["sessionId"] = record.conversation_id
        trace["metadata"]["conversation_turn"] = record.conversation_turn
    generation = _generation(record)
    if environment:
        trace["environment"] = generation["environment"] = environment
    return [_envelope("trace-create", trace, now), _envelope("generation-create", generation, now)]


class LangfuseExporter:
    """Sends turns to Langfuse on its own thread (a ``TurnCallback``).

    ``host`` defaults to Langfuse Cloud (EU); keys are passed in, never read
    here, and never printed. Batches of at most ``max_batch_turns`` turns
    (default 100, two events each: well under Langfuse's 3.5 MB batch
    limit), retried per ``policy``; ``stats()`` has the outbox counters and
    ``rejected_events`` (events Langfuse refused in a 207 answer).
    """

    def __init__(
        self,
        public_key: str,
        secret_key: str,
        *,
        host: str = "https://cloud.langfuse.com",
        environment: str | None = None,
        max_batch_turns: int = 100,
        max_queued_turns: int = 10_000,
        policy: RetryPolicy = RetryPolicy(),
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ):
        token = base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()
        self._authorization = Secret(f"Basic {token}")
        self._url = host.rstrip("/") + "/api/public/ingestion"
        self._environment = environment
        self._poster = HttpPoster("langfuse", policy=policy, timeout_s=timeout_s, transport=transport)
        self._rejected_events = 0
        self._outbox: Outbox[TurnRecord] = Outbox(
            self._deliver, name="langfuse", max_batch=max_batch_turns, max_items=max_queued_turns
        )

    def on_turns(self, records: Sequence[TurnRecord]) -> None:
        self._outbox.put(records)

    def close(self, timeout_s: float = 10.0) -> None:
        self._outbox.close(timeout_s)
        self._poster.close()

    def stats(self) -> dict[str, int]:
        return {**self._outbox.stats(), "rejected_events": self._rejected_events}

    def __repr__(self) -> str:
        return f"LangfuseExporter(url={self._url!r})"

    def _deliver(self, records: list[TurnRecord]) -> bool:
        now = datetime.now(timezone.utc)
        batch = [event for r in records for event in langfuse_events(r, environment=self._environment, now=now)]
        headers = {"Authorization": self._authorization.reveal()}
        response = self._poster.post(self._url, json={"batch": batch}, headers=headers)
        if response is None:
            return False
        if response.status_code == 207:
            self._count_rejected(response)
        return True

    def _count_rejected(self, response: httpx.Response) -> None:
        try:
            errors = response.json().get("errors") or []
        except ValueError:
            return
        if errors:
            self._rejected_events += len(errors)
            statuses = sorted({str(e.get("status")) for e in errors if isinstance(e, dict)})
            logger.warning("langfuse: %d events rejected (statuses %s)", len(errors), ", ".join(statuses))
