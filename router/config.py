"""The router's configuration: one YAML (or JSON) file, validated once.

Raw YAML is parsed into these frozen pydantic models; unknown keys are
errors, and a bad file fails at start-up with the file, the field path and
the reason (``ConfigError``). With no file, ``embedded_default`` builds the
keyless configuration the README's ``make run`` uses.

Shape::

    server:       {host, port, max_body_bytes}
    model_groups:
      voice-fast:
        strategy: latency-based | least-busy | weighted-shuffle | ordered
        timeouts: {connect_s, first_token_s, total_s}
        latency: {decay_s, explore_share, in_flight_penalty, failure_penalty_s}
        breaker: {consecutive_failures, error_rate, window_s, min_requests,
                  cooldown_s, max_cooldown_s}
        health_check: {enabled, interval_s, timeout_s}
        hedge: {delay_s, min_delay_s, max_share}      # optional
        affinity: {enabled, ttl_s, margin_s, default_margin_s, max_pins}
        fallbacks: [other groups]; request_error_fallback: group
        endpoints:
          - {name, provider, base_url, model, api_key_env, tags, weight}
    turn_log:     {sink: local, path, flush_interval_s, flush_max_records, wal: {enabled, path}}
    conversations: {max_tracked, idle_ttl_s}
    deployments:  {ingress_replicas, caller_replicas, ...}
"""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, StringConstraints, ValidationError, model_validator

from router.config_base import Frozen as _Frozen
from router.config_conversations import AffinityConfig, ConversationsConfig
from router.config_observability import (
    AlertRuleConfig,
    DatadogExportConfig,
    LangfuseExportConfig,
    MetricsConfig,
    S3Config,
    SpoolConfig,
    WalConfig,
    TurnLogConfig,
)
from router.errors import ConfigError, ConfigIssue
from router.keys.config import AuthConfig
from router.response_cache.config import CacheConfig
from router.tags import TAG_PATTERN

__all__ = [
    "EndpointConfig",
    "TimeoutConfig",
    "StrategyName",
    "LatencyConfig",
    "BreakerConfig",
    "HealthCheckConfig",
    "HedgeConfig",
    "AffinityConfig",
    "ConversationsConfig",
    "ModelGroupConfig",
    "ServerConfig",
    "TurnLogConfig",
    "S3Config",
    "SpoolConfig",
    "WalConfig",
    "LangfuseExportConfig",
    "DatadogExportConfig",
    "MetricsConfig",
    "AlertRuleConfig",
    "DeploymentConfig",
    "RouterConfig",
    "parse_config",
    "load_config",
]


class EndpointConfig(_Frozen):
    """One upstream that can serve a model group.

    ``api_key_env`` names the environment variable holding the key; the key
    itself never appears in config, logs or responses. ``tags`` are
    lowercase labels requests can ask for (``router.tags``); ``weight`` is
    the relative share under ``weighted-shuffle`` (default 1).
    """

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._:/-]+$")
    # openai: any OpenAI-compatible host, base_url ending in /v1.
    # anthropic / gemini: base_url is the API root (https://api.anthropic.com,
    # https://generativelanguage.googleapis.com).
    provider: Literal["openai", "anthropic", "gemini"] = "openai"
    base_url: str = Field(pattern=r"^https?://")
    model: str = Field(min_length=1)
    api_key_env: str | None = None
    tags: tuple[Annotated[str, StringConstraints(pattern=TAG_PATTERN)], ...] = ()
    weight: float = Field(default=1.0, gt=0)


class TimeoutConfig(_Frozen):
    """Per-attempt limits, in seconds.

    ``first_token_s``: the first-token deadline: no content token by then
    and the attempt is abandoned for the next link. ``stall_s``: after the
    first token, the longest gap between reads before the stream counts as
    stalled (the socket read timeout is ``max(first_token_s, stall_s)``, since
    one socket read timeout covers the headers and every read). ``total_s`` caps
    the whole turn, across every attempt.
    """

    connect_s: float = Field(default=2.0, gt=0)
    first_token_s: float = Field(default=10.0, gt=0)
    stall_s: float = Field(default=5.0, gt=0)
    total_s: float = Field(default=120.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> "TimeoutConfig":
        if self.first_token_s > self.total_s:
            raise ValueError("first_token_s must not exceed total_s")
        return self


StrategyName = Literal["latency-based", "least-busy", "weighted-shuffle", "ordered"]
"""How a group ranks its endpoints; see ``router.strategies``."""


class LatencyConfig(_Frozen):
    """Tuning of the ``latency-based`` strategy (``router.strategies``).

    ``decay_s``: time constant, in seconds, of the peak-EWMA's decay towards
    a lower sample (default 5; Finagle and tower use 10, but a voice group
    should win back a fast endpoint within seconds of a single hiccup); an
    endpoint with no sample for ``decay_s`` counts as having no recent data.

    ``explore_share``: probability that a turn goes to a random endpoint
    without recent data instead of the best (default 0.05; 0 disables), so
    none is starved of fresh signal.

    ``in_flight_penalty``: score = latency x (1 + in_flight_penalty x
    in_flight). 1.0 is tower's ``cost x (pending + 1)``; the default 0.1 is
    much softer because hosted LLM endpoints barely slow down with one
    router's load, batched reports make in-flight counts lag by up to one
    report interval, and the age of pending turns already marks a stalling
    endpoint as slow. Raise it for self-hosted endpoints that queue.

    ``failure_penalty_s``: the latency sample a failed attempt counts as, at
    least (default None: the group's ``timeouts.first_token_s``, i.e. as bad
    as a turn that ran out its first-token deadline).
    """

    decay_s: float = Field(default=5.0, gt=0)
    explore_share: float = Field(default=0.05, ge=0, le=0.5)
    in_flight_penalty: float = Field(default=0.1, ge=0)
    failure_penalty_s: float | None = Field(default=None, gt=0)


class BreakerConfig(_Frozen):
    """The per-endpoint circuit breaker (``router.breaker``), Envoy-style.

    Opens after ``consecutive_failures`` failed attempts in a row (default 3),
    or when at least ``min_requests`` attempts (default 10) in the last
    ``window_s`` seconds (default 30) failed at a rate of ``error_rate`` or
    more (default 0.5). Stays open ``cooldown_s`` seconds (default 5), then
    lets one probe turn through; each re-opening without a full recovery
    doubles the cooldown, up to ``max_cooldown_s`` (default 60).
    """

    consecutive_failures: int = Field(default=3, ge=1)
    error_rate: float = Field(default=0.5, gt=0, le=1)
    window_s: float = Field(default=30.0, gt=0)
    min_requests: int = Field(default=10, ge=1)
    cooldown_s: float = Field(default=5.0, gt=0)
    max_cooldown_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _cooldowns_ordered(self) -> "BreakerConfig":
        if self.max_cooldown_s < self.cooldown_s:
            raise ValueError("max_cooldown_s must not be less than cooldown_s")
        return self


class HealthCheckConfig(_Frozen):
    """An optional active health check per endpoint (run by ``deployments``).

    Off by default. ``interval_s``: seconds between checks of one endpoint
    (default 10); ``timeout_s``: seconds one check may take (default 2),
    at most ``interval_s``.
    """

    enabled: bool = False
    interval_s: float = Field(default=10.0, gt=0)
    timeout_s: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> "HealthCheckConfig":
        if self.timeout_s > self.interval_s:
            raise ValueError("timeout_s must not exceed interval_s")
        return self


class HedgeConfig(_Frozen):
    """Hedged first token: when the first endpoint has sent no content token
    after the hedge delay, the next endpoint of the plan starts beside it; the
    first to send a content token serves the turn and the other is cancelled
    at once (connection closed, in-flight count released).

    ``delay_s``: the hedge delay in seconds; None (default) means the first
    endpoint's recent p95 time to first token as the tracker sees it (no
    hedge until it has samples), never below ``min_delay_s`` (default 0.05).
    ``max_share``: at most this share of a caller replica's recent turns of
    the group are hedged (default 0.1, over the last 100 turns), so a slow
    provider cannot double the load on the others. Streaming turns only: a
    non-streaming turn has no first token to race for.
    """

    delay_s: float | None = Field(default=None, gt=0)
    min_delay_s: float = Field(default=0.05, gt=0)
    max_share: float = Field(default=0.1, gt=0, le=1)


class ModelGroupConfig(_Frozen):
    """A name clients ask for, served by one or more endpoints.

    ``strategy`` defaults to ``latency-based``, the one for voice. A
    ``latency:`` block is only accepted with that strategy.
    """

    strategy: StrategyName = "latency-based"
    endpoints: tuple[EndpointConfig, ...] = Field(min_length=1)
    timeouts: TimeoutConfig = TimeoutConfig()
    # Bound on attempts for one turn, across this group and its fallbacks.
    max_attempts: int = Field(default=3, ge=1)
    # Other groups to walk, in order, once this group's endpoints are used up
    # or unhealthy (cross-provider failover). Not transitive: a fallback's
    # own fallbacks are not followed, so a chain is exactly what is written.
    fallbacks: tuple[str, ...] = ()
    # When a stream breaks after tokens were sent: carry the turn over to the
    # next endpoint of the plan and splice (``continue``), or end the stream
    # with an SSE error event (``error``). Turns with tool calls never continue.
    midstream: Literal["continue", "error"] = "continue"
    # A 4xx caused by the request itself (bad parameters, context too long)
    # is not retried on this chain; it moves to this group instead, if set
    # (e.g. one with a larger context window), for at least one attempt.
    request_error_fallback: str | None = None
    # Hedged first token (None: off).
    hedge: HedgeConfig | None = None
    # Cache-warm routing for turns that name a conversation (router.affinity).
    affinity: AffinityConfig = AffinityConfig()
    latency: LatencyConfig = LatencyConfig()
    breaker: BreakerConfig = BreakerConfig()
    health_check: HealthCheckConfig = HealthCheckConfig()

    @model_validator(mode="after")
    def _latency_block_needs_latency_strategy(self) -> "ModelGroupConfig":
        if "latency" in self.model_fields_set and self.strategy != "latency-based":
            raise ValueError(f"a latency: block only applies to strategy latency-based, not {self.strategy!r}")
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> "ModelGroupConfig":
        names = [e.name for e in self.endpoints]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"endpoint names repeat within the group: {dupes}")
        return self


class ServerConfig(_Frozen):
    host: str = "127.0.0.1"
    # The Serve instance uses the 300 ports above this one (deployments.serve_ports).
    port: int = Field(default=8000, ge=1, le=65535 - 300)
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    # A body announced but not sent (slowloris) is answered 408 after this
    # long: a turn's body is small and arrives at once from a real client.
    body_read_timeout_s: float = Field(default=10.0, gt=0)
    # A stop drains: new turns are refused (503 router_stopping), turns in
    # flight get this long to finish, then the rest end with the router's
    # error event and a record (deployments.drain; README "Stopping").
    stop_grace_s: float = Field(default=10.0, ge=0, le=300)
    # What one streamed turn may hold for a client that reads slowly (or not
    # at all): past it the router stops reading upstream until the client
    # catches up (router.turn.pace). A voice reply is a few KiB.
    stream_buffer_bytes: int = Field(default=1 << 20, ge=1024)


# A Ray custom resource's name (not CPU/GPU/memory: those are Ray's own).
ResourceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]*$", max_length=64)]
PositiveFloat = Annotated[float, Field(gt=0)]
_RAY_BUILTIN_RESOURCES = frozenset({"CPU", "GPU", "memory", "object_store_memory"})


class ReplicaAutoscaling(_Frozen):
    """Serve's autoscaling for a deployment (in place of a fixed replica
    count): replicas are added while each has more than
    ``target_ongoing_requests`` turns in flight, and removed when idle,
    between ``min_replicas`` and ``max_replicas``. No scale to zero: a
    caller would wait for a replica to start."""

    min_replicas: int = Field(default=1, ge=1)
    max_replicas: int = Field(ge=1)
    target_ongoing_requests: float = Field(default=100.0, gt=0)
    upscale_delay_s: float = Field(default=10.0, ge=0)
    downscale_delay_s: float = Field(default=300.0, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> "ReplicaAutoscaling":
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be at least min_replicas")
        return self


class DeploymentConfig(_Frozen):
    """Replica counts and the tracker's Ray actor name."""

    ingress_replicas: int = Field(default=1, ge=1)
    caller_replicas: int = Field(default=1, ge=1)
    # Serve autoscaling instead of the fixed counts above, when set.
    ingress_autoscaling: ReplicaAutoscaling | None = None
    caller_autoscaling: ReplicaAutoscaling | None = None
    caller_max_ongoing_requests: int = Field(default=1000, ge=1)
    ingress_max_ongoing_requests: int = Field(default=1000, ge=1)
    tracker_name: str = "nemo-latency-tracker"
    tracker_namespace: str = "nemo-router"
    # Tracker actors the routing state is split over (router.shards): groups
    # linked by fallbacks share one; each plan is one call to its group's.
    tracker_shards: int = Field(default=1, ge=1, le=64)
    # The actor holding rate-limit windows and keys' spend (deployments.keystore).
    keystore_name: str = "nemo-keystore"
    report_interval_s: float = Field(default=0.05, gt=0)
    # Measured alternatives to the design card's shape (benchmarks/compare.py;
    # README "Performance"). ``planning: snapshot``: the ingress reuses the
    # tracker's latest plan for up to ``snapshot_interval_s`` and reports
    # in-flight turns in batches, instead of one tracker call per turn.
    # ``upstream_calls: ingress``: each ingress replica calls upstreams
    # itself instead of through the provider-caller deployment.
    planning: Literal["per-turn", "snapshot"] = "per-turn"
    snapshot_interval_s: float = Field(default=0.05, gt=0)
    upstream_calls: Literal["caller", "ingress"] = "caller"
    # The pooled HTTP client for upstream calls: aiohttp costs less per
    # streamed piece than httpx (benchmarks/serve_floor.py).
    upstream_client: Literal["aiohttp", "httpx"] = "aiohttp"
    # Placement on a multi-node cluster (README "Placing the router on a
    # cluster's nodes"): Ray custom resources that each ingress replica, each
    # provider-caller replica and each of the cluster-wide actors (tracker,
    # keystore, metrics hub, cache, health prober) asks for. Give nodes
    # those resources (cluster.yaml's ``resources``, ``ray start
    # --resources``); empty: anywhere, as before.
    ingress_resources: dict[ResourceName, PositiveFloat] = {}
    caller_resources: dict[ResourceName, PositiveFloat] = {}
    actor_resources: dict[ResourceName, PositiveFloat] = {}

    @model_validator(mode="after")
    def _custom_resources_only(self) -> "DeploymentConfig":
        for field in ("ingress_resources", "caller_resources", "actor_resources"):
            builtin = sorted(_RAY_BUILTIN_RESOURCES & set(getattr(self, field)))
            if builtin:
                raise ValueError(f"{field}: {', '.join(builtin)} is Ray's own resource, not a custom one "
                                 "(the router's replicas and actors ask for no CPU)")
        return self


class RouterConfig(_Frozen):
    server: ServerConfig = ServerConfig()
    model_groups: dict[str, ModelGroupConfig] = Field(min_length=1)
    turn_log: TurnLogConfig = TurnLogConfig()
    deployments: DeploymentConfig = DeploymentConfig()
    # Client keys by hash, allowed models, rate limits; the admin key. No
    # keys at all: an open router (every turn anonymous, admin routes open).
    auth: AuthConfig = AuthConfig()
    metrics: MetricsConfig = MetricsConfig()
    # Identical requests answered from memory (one actor, shared by every
    # ingress replica); ``nemo_cache: false`` in a request skips it.
    cache: CacheConfig = CacheConfig()
    # The turn counter per conversation, in the tracker (router.conversation).
    conversations: ConversationsConfig = ConversationsConfig()

    @model_validator(mode="after")
    def _globally_unique_endpoints(self) -> "RouterConfig":
        seen: dict[str, str] = {}
        for group_name, group in self.model_groups.items():
            for endpoint in group.endpoints:
                if endpoint.name in seen:
                    raise ValueError(
                        f"endpoint {endpoint.name!r} appears in groups "
                        f"{seen[endpoint.name]!r} and {group_name!r}; endpoint names must be unique"
                    )
                seen[endpoint.name] = group_name
        return self

    @model_validator(mode="after")
    def _alerts_name_groups(self) -> "RouterConfig":
        for rule in self.metrics.alerts:
            if rule.model_group != "*" and rule.model_group not in self.model_groups:
                raise ValueError(f"alert on unknown model group {rule.model_group!r}")
        return self

    @model_validator(mode="after")
    def _scrape_key_is_its_own(self) -> "RouterConfig":
        scrape_hash = self.metrics.scrape.key_hash
        if scrape_hash is not None and (scrape_hash == self.auth.admin_key_hash or scrape_hash in {k.hash for k in self.auth.keys}):
            raise ValueError("metrics.scrape.key_hash must be a key of its own, not the admin key or a client key")
        return self

    @model_validator(mode="after")
    def _spend_alerts_name_keys(self) -> "RouterConfig":
        metered = {key.name for key in self.auth.keys if key.metered}
        for rule in self.metrics.spend_alerts:
            if rule.key != "*" and rule.key not in metered:
                raise ValueError(f"spend alert on {rule.key!r}, which is not a key with a credit_usd or budget_usd")
        return self

    @model_validator(mode="after")
    def _fallbacks_exist(self) -> "RouterConfig":
        for group_name, group in self.model_groups.items():
            for fallback in group.fallbacks:
                if fallback == group_name:
                    raise ValueError(f"group {group_name!r} lists itself as a fallback")
                if fallback not in self.model_groups:
                    raise ValueError(f"group {group_name!r} falls back to unknown group {fallback!r}")
            if len(set(group.fallbacks)) != len(group.fallbacks):
                raise ValueError(f"group {group_name!r} lists a fallback twice")
            target = group.request_error_fallback
            if target is not None and (target == group_name or target not in self.model_groups):
                raise ValueError(f"group {group_name!r}: request_error_fallback {target!r} must name another configured group")
        return self

    def endpoint(self, name: str) -> EndpointConfig:
        for group in self.model_groups.values():
            for endpoint in group.endpoints:
                if endpoint.name == name:
                    return endpoint
        raise KeyError(name)


def parse_config(raw: Any, source: str = "<config>", *, environ: Mapping[str, str] | None = None) -> RouterConfig:
    """Validate an already-parsed mapping; raise ``ConfigError`` with field paths.

    With ``environ`` (read once at start-up by the caller), every catalog
    model whose provider key is present there becomes a model group of its
    own name, unless the config already defines that group."""
    if not isinstance(raw, dict):
        raise ConfigError(source, [ConfigIssue("<root>", "expected a mapping at the top level")])
    if environ is not None:
        from router.catalog import load_catalog, with_catalog_groups  # the catalog builds on this module

        raw = with_catalog_groups(raw, load_catalog(), environ)
    try:
        return RouterConfig.model_validate(raw)
    except ValidationError as exc:
        issues = [
            ConfigIssue(".".join(str(p) for p in err["loc"]) or "<root>", err["msg"])
            for err in exc.errors()
        ]
        raise ConfigError(source, issues) from exc


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> RouterConfig:
    """Read a YAML or JSON file and validate it (``environ``: see ``parse_config``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [ConfigIssue("<file>", f"cannot read: {exc.strerror}")]) from exc
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(str(path), [ConfigIssue("<file>", f"not valid YAML/JSON: {exc}")]) from exc
    return parse_config(raw, source=str(path), environ=environ)
