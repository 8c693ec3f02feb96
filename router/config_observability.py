"""Configuration of what the router records and reports: the turn log
(local folder or S3 with a spool, Langfuse and Datadog exports) and the
metrics hub with its alert rules. Part of ``router.config``'s schema.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from router.config_base import Frozen as _Frozen
from router.keys.hashing import parse_key_hash

__all__ = [
    "S3Config",
    "SpoolConfig",
    "WalConfig",
    "LangfuseExportConfig",
    "DatadogExportConfig",
    "TurnLogConfig",
    "AlertRuleConfig",
    "ScrapeConfig",
    "MetricsConfig",
]


class S3Config(_Frozen):
    """Where the S3 sink writes: ``s3://{bucket}/{prefix}/dt=.../hour=.../``.
    ``endpoint_url`` points at an S3-compatible store (MinIO, moto, R2).
    Credentials come from boto3's usual chain, never from this file."""

    bucket: str = Field(min_length=3)
    prefix: str = "turnlog"
    region: str | None = None
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://")


class SpoolConfig(_Frozen):
    """The local folder that holds batches S3 refused, re-sent oldest first.
    One per node is best: a restarted replica drains what the last one left."""

    path: str = "./turnlog-spool"
    max_bytes: int = Field(default=1 << 30, gt=0)
    retry_backoff_s: float = Field(default=30.0, ge=0)


class WalConfig(_Frozen):
    """The turn log's write-ahead log: every record is appended to a file
    in ``path`` (default: ``_wal`` inside the local turn-log folder, or
    inside the S3 spool folder) before the turn ends, so a killed replica's
    unflushed records are written by the next replica on the node. It
    survives the death of a process, not of the machine (no fsync)."""

    enabled: bool = True
    path: str | None = None


class LangfuseExportConfig(_Frozen):
    """Export every turn to Langfuse (trace + generation) through its public
    ingestion API. Keys come from the named environment variables."""

    enabled: bool = False
    host: str = Field(default="https://cloud.langfuse.com", pattern=r"^https?://")
    public_key_env: str = "LANGFUSE_PUBLIC_KEY"
    secret_key_env: str = "LANGFUSE_SECRET_KEY"
    environment: str | None = None
    max_batch_turns: int = Field(default=100, ge=1, le=1000)


class DatadogExportConfig(_Frozen):
    """Export every turn to Datadog: a log per turn, and TTFT / total
    latency distributions. The API key comes from ``api_key_env``."""

    enabled: bool = False
    site: str = "datadoghq.com"
    api_key_env: str = "DD_API_KEY"
    service: str = "nemo-router"
    tags: tuple[str, ...] = ()
    send_metrics: bool = True
    max_batch_turns: int = Field(default=500, ge=1, le=1000)


class TurnLogConfig(_Frozen):
    """Where turn records go: a local folder (``path``), S3 (``s3``, with a
    local ``spool`` for outages), or nowhere. Records are buffered per
    caller replica and flushed every ``flush_interval_s`` seconds or
    ``flush_max_records`` records, whichever comes first; with the ``wal``
    (on by default for local and s3 sinks) a killed replica loses none of
    it."""

    sink: Literal["local", "s3", "none"] = "local"
    path: str = "./turnlog-data"
    s3: S3Config | None = None
    spool: SpoolConfig = SpoolConfig()
    wal: WalConfig = WalConfig()
    # Message contents stay out of the turn log unless this is on (privacy).
    store_messages: bool = False
    langfuse: LangfuseExportConfig = LangfuseExportConfig()
    datadog: DatadogExportConfig = DatadogExportConfig()
    flush_interval_s: float = Field(default=5.0, gt=0)
    flush_max_records: int = Field(default=500, ge=1, le=100_000)

    @model_validator(mode="after")
    def _s3_needs_bucket(self) -> "TurnLogConfig":
        if self.sink == "s3" and self.s3 is None:
            raise ValueError("sink: s3 needs an s3: block with at least a bucket")
        return self


class AlertRuleConfig(_Frozen):
    """Fire when ``metric`` of a model group (``*``: each group) is over
    ``threshold`` across the last ``window_s`` seconds, once at least
    ``min_turns`` turns were seen; changes of state at most every
    ``cooldown_s``. Firing and resolution post to the webhook."""

    metric: Literal["ttft_p99_s", "total_p99_s", "error_rate", "spend_usd_per_hour"]
    threshold: float = Field(ge=0)
    model_group: str = "*"
    window_s: float = Field(default=60.0, gt=0)
    min_turns: int = Field(default=20, ge=1)
    cooldown_s: float = Field(default=300.0, ge=0)
    name: str = ""


class SpendAlertConfig(_Frozen):
    """Fire when a key (``*``: each metered key) has used ``threshold`` (a
    share: 0.8 = 80 %) of its period's budget (``budget_used``) or of its
    credit (``credit_used``); resolve when it drops below (a new period, a
    top-up). Evaluated by the keystore as the key is charged; posted to the
    same webhook as the latency alerts."""

    metric: Literal["budget_used", "credit_used"]
    threshold: float = Field(gt=0, allow_inf_nan=False)
    key: str = "*"
    cooldown_s: float = Field(default=0.0, ge=0)
    name: str = ""


class ScrapeConfig(_Frozen):
    """Who may read ``GET /metrics`` besides the admin key: a bearer key of
    its own (``key_hash``, as printed by ``nemo-router hash-key``), or any
    scraper whose address is in ``networks`` (CIDRs), no key needed.

    The address: with ``forwarded_hops: 0``, the TCP peer the ingress sees,
    and a request carrying ``X-Forwarded-For`` is never let in by network
    (the server would have taken the peer from that header). That peer is
    the client only without Serve's HAProxy in front (``--serve-mode
    classic``): HAProxy adds no ``X-Forwarded-For`` and is every request's
    peer, so the router refuses ``networks`` with ``forwarded_hops: 0`` when
    HAProxy is on. With ``forwarded_hops: N``, the N-th address from the
    right of ``X-Forwarded-For``: what the outermost of N proxies in front
    of the router (each appending the address it saw) saw. Only right if
    clients cannot reach the router except through those proxies."""

    key_hash: str | None = None
    networks: tuple[str, ...] = ()
    forwarded_hops: int = Field(default=0, ge=0, le=10)

    @field_validator("key_hash")
    @classmethod
    def _normalised_hash(cls, value: str | None) -> str | None:
        return None if value is None else parse_key_hash(value)

    @field_validator("networks")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(str(ipaddress.ip_network(network)) for network in value)  # ValueError names a bad one


class MetricsConfig(_Frozen):
    """Rolling p50/p99 per model group and endpoint, held by one hub actor
    that caller replicas report to every ``report_interval_s``; alerts are
    evaluated there every ``evaluate_interval_s``; the dashboard's recent
    turns are the last ``dashboard_turns`` the hub received. The webhook URL (it holds
    a token) comes from the environment variable ``webhook_url_env``."""

    enabled: bool = True
    # The hub actor's name; None (default): "<deployments.tracker_name>-metrics",
    # so each router has its own hub (router.rollout.ActorNames).
    hub_name: str | None = None
    window_s: float = Field(default=300.0, gt=0)
    slot_s: float = Field(default=10.0, gt=0)
    report_interval_s: float = Field(default=1.0, gt=0)
    evaluate_interval_s: float = Field(default=5.0, gt=0)
    dashboard_turns: int = Field(default=5000, ge=100, le=100_000)
    webhook_url_env: str = "NEMO_ALERT_WEBHOOK_URL"
    alerts: tuple[AlertRuleConfig, ...] = ()
    spend_alerts: tuple[SpendAlertConfig, ...] = ()
    scrape: ScrapeConfig = ScrapeConfig()

    @model_validator(mode="after")
    def _windows_fit(self) -> "MetricsConfig":
        if self.slot_s > self.window_s:
            raise ValueError("slot_s must not exceed window_s")
        for rule in self.alerts:
            if rule.window_s > self.window_s:
                raise ValueError(f"alert window_s {rule.window_s} exceeds metrics window_s {self.window_s}")
        return self
