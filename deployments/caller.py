"""The provider-caller deployment: the replicas that talk to upstreams.

A thin Ray Serve shell around ``router.turn.TurnRunner``: it owns the
pooled HTTP client (the runner's transport), the channel that reports
attempts to the tracker and this replica's turn-log writer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from collections.abc import AsyncIterator

import ray
from ray import serve

from router.catalog import endpoint_prices, load_catalog
from router.config import RouterConfig
from router.rollout import ActorNames
from router.turn.settle import settled_stream
from router.turn import TurnFailure, TurnHead, TurnRequest, TurnRunner, TurnSettled, TurnState
from router.turn.pace import ReadPacer
from nemo_turnlog import LocalParquetSink, S3ParquetSink, SpoolingSink, TurnLogWriter, WriteAheadLog
from nemo_turnlog.callbacks import FanoutSink
from nemo_turnlog.datadog import DatadogExporter
from nemo_turnlog.langfuse import LangfuseExporter

from deployments.replicas import replica_options
from deployments.tracker_shards import TrackerShards
from deployments.cache_actor import cache_actor_name
from deployments.coalesce import CoalescingStream
from deployments.metrics_hub import MetricsReporter
from deployments.reporter import OutcomeReporter
from deployments.stop import GRACEFUL_SHUTDOWN_POLL_S, ROLLOUT_SURGE_PERCENT, SHUTDOWN_MARGIN_S
from deployments.turn_log import turn_record
from deployments.upstream import resolve_api_keys, upstream_pool

__all__ = ["ProviderCaller"]

# A stopped turn ends at its next await (its deadline is expired at once):
# this bounds the wait for it, and for its record.
STOPPED_TURNS_END_S = 2.0


class ProviderCaller:
    def __init__(self, config: RouterConfig):
        endpoints = [e for g in config.model_groups.values() for e in g.endpoints]
        # Keys are read once, here, at replica start-up; they live only in
        # the pool's request headers.
        self._pool = upstream_pool(config.deployments.upstream_client, resolve_api_keys(endpoints, os.environ))
        self._reporter = OutcomeReporter(TrackerShards(config).report, config.deployments.report_interval_s)
        self._writer = _turn_log_writer(config, os.environ)
        self._stream_buffer_bytes = config.server.stream_buffer_bytes
        self._metrics = None
        if config.metrics.enabled:
            hub = ray.get_actor(ActorNames.of(config).metrics_hub, namespace=config.deployments.tracker_namespace)
            self._metrics = MetricsReporter(hub.report.remote, config.metrics.report_interval_s, config.metrics.slot_s)
        prices = endpoint_prices(load_catalog(), endpoints)
        cache_put = None
        if config.cache.enabled:
            cache = ray.get_actor(cache_actor_name(config), namespace=config.deployments.tracker_namespace)
            cache_put = cache.put.remote  # fire-and-forget, after the turn
        self._runner = TurnRunner(
            config, self._pool, self._reporter.add, self._emit_turn,
            prices=prices, cache_put=cache_put, cache_entry_bytes=config.cache.max_entry_bytes,
        )
        # Keys whose turns are charged, and the cost of each priced turn that
        # has ended (any non-streamed one; a streamed one of these keys) until
        # it is handed to the ingress (turn id -> USD).
        self._metered = frozenset(key.name for key in config.auth.keys if key.metered)
        self._costs: dict[str, float] = {}

    def open_stream(self, request: TurnRequest) -> CoalescingStream:
        """The turn running in a task of its own, read with coalescing: pieces
        that pile up while this replica is busy leave as one (one Ray object,
        or one socket write in the ingress; ``deployments.coalesce``)."""
        pacer = ReadPacer(self._stream_buffer_bytes)
        if request.api_key_id in self._metered:
            return CoalescingStream(self._settled(request, pacer), pacer)
        return CoalescingStream(self._runner.stream(request, pacer), pacer)

    async def _settled(self, request: TurnRequest, pacer: ReadPacer) -> AsyncIterator[TurnHead | TurnFailure | bytes | TurnSettled]:
        """A metered key's streamed turn, with what it cost before ``[DONE]``
        (``router.turn.settle``)."""
        try:
            # The runner emitted the turn's record (and its cost) as it ended.
            async for item in settled_stream(self._runner.stream(request, pacer), lambda: self._costs.pop(request.turn_id, None)):
                yield item
        finally:
            self._costs.pop(request.turn_id, None)

    def _emit_turn(self, turn: TurnState) -> None:
        if turn.cost is not None and (not turn.request.stream or turn.request.api_key_id in self._metered):
            self._costs[turn.request.turn_id] = turn.cost.usd
        self._emit(turn_record(turn))

    def _emit(self, record) -> None:
        if self._metrics is not None:
            self._metrics.observe(record)
        if self._writer is not None:
            self._writer.emit(record)

    async def stream_turn(self, request: TurnRequest) -> AsyncIterator[TurnHead | TurnFailure | bytes]:
        stream = self.open_stream(request)
        try:
            async for item in stream:
                yield item
        finally:
            stream.cancel()

    async def complete_turn(self, request: TurnRequest) -> tuple[TurnHead, bytes] | TurnFailure:
        """The turn's result; its head carries what it cost, if it was priced."""
        try:
            result = await self._runner.complete(request)
            cost = self._costs.pop(request.turn_id, None)
        finally:
            self._costs.pop(request.turn_id, None)
        if cost is not None and not isinstance(result, TurnFailure):
            head, payload = result
            return dataclasses.replace(head, cost_usd=cost), payload
        return result

    def record(self, record) -> None:
        """A turn the ingress served itself (a cache hit) joins the turn log
        and metrics of this replica."""
        self._emit(record)

    async def drain(self, grace_s: float) -> dict:
        """The router is stopping (``deployments.drain``): let this
        replica's turns finish for ``grace_s``, stop the rest (each ends with
        the router's ``router_stopping`` error and its record), and flush the
        turn log and metrics. What happened, for the stop's report."""
        live = self._runner.live
        in_flight = len(live)
        stopped = 0 if await live.wait_empty(grace_s) else live.stop_all()
        if stopped:
            await live.wait_empty(STOPPED_TURNS_END_S)
        await asyncio.to_thread(self.flush)  # the sink's I/O, off the event loop
        return {"in_flight": in_flight, "stopped": stopped, "left": len(live)}

    def flush(self) -> None:
        if self._metrics is not None:
            self._metrics.flush()
        if self._writer is not None:
            self._writer.flush()

    def __del__(self):
        metrics = getattr(self, "_metrics", None)
        if metrics is not None:
            metrics.flush()
        writer = getattr(self, "_writer", None)
        if writer is not None:
            writer.close()


def _turn_log_writer(config: RouterConfig, environ) -> TurnLogWriter | None:
    """This replica's writer: the Parquet sink first, then any exporters
    (which see a batch only once the Parquet sink has stored it)."""
    settings = config.turn_log
    replica_id = f"caller-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    primary = None
    if settings.sink == "s3":
        s3 = settings.s3
        primary = SpoolingSink(
            S3ParquetSink(s3.bucket, s3.prefix, replica_id, region=s3.region, endpoint_url=s3.endpoint_url),
            settings.spool.path,
            max_spool_bytes=settings.spool.max_bytes,
            retry_backoff_s=settings.spool.retry_backoff_s,
        )
    elif settings.sink == "local":
        primary = LocalParquetSink(settings.path, replica_id)
    exporters = _exporters(settings, environ)
    if primary is None and not exporters:
        return None
    sink = FanoutSink(exporters, primary=primary) if exporters else primary
    wal = WriteAheadLog(wal_root, replica_id) if (wal_root := _wal_root(settings)) is not None else None
    return TurnLogWriter(
        sink, flush_interval_s=settings.flush_interval_s, flush_max_records=settings.flush_max_records, wal=wal
    )


def _wal_root(settings) -> str | None:
    """The WAL's folder: configured, or ``_wal`` in the local turn-log
    folder or S3 spool (readers skip ``_`` names); None without a Parquet
    sink or with the WAL off."""
    if not settings.wal.enabled or settings.sink == "none":
        return None
    if settings.wal.path is not None:
        return settings.wal.path
    return os.path.join(settings.spool.path if settings.sink == "s3" else settings.path, "_wal")


def _exporters(settings, environ) -> list:
    """Langfuse / Datadog exporters; a missing key fails start-up, naming the
    variable, never its value."""
    def key(name: str) -> str:
        if not environ.get(name):
            raise RuntimeError(f"turn-log export is enabled but the environment variable {name} is not set")
        return environ[name]

    exporters = []
    lf, dd = settings.langfuse, settings.datadog
    if lf.enabled:
        exporters.append(
            LangfuseExporter(key(lf.public_key_env), key(lf.secret_key_env), host=lf.host,
                             environment=lf.environment, max_batch_turns=lf.max_batch_turns)
        )
    if dd.enabled:
        exporters.append(
            DatadogExporter(key(dd.api_key_env), site=dd.site, service=dd.service, tags=dd.tags,
                            send_metrics=dd.send_metrics, max_batch_turns=dd.max_batch_turns)
        )
    return exporters


def caller_deployment(config: RouterConfig):
    options = config.deployments
    return serve.deployment(
        ProviderCaller,
        name="ProviderCaller",
        **replica_options(options.caller_replicas, options.caller_autoscaling),
        max_ongoing_requests=options.caller_max_ongoing_requests,
        ray_actor_options={"num_cpus": 0, "resources": dict(options.caller_resources)},
        # When Serve itself stops a replica (serve deploy, serve shutdown),
        # its turns in flight get the same grace as a local stop's drain.
        graceful_shutdown_timeout_s=config.server.stop_grace_s + SHUTDOWN_MARGIN_S,
        graceful_shutdown_wait_loop_s=GRACEFUL_SHUTDOWN_POLL_S,
        max_surge_percent=ROLLOUT_SURGE_PERCENT,  # a redeploy starts replacements first
        # Serve's per-request access log costs CPU on every turn; the turn
        # log records every turn already.
        logging_config={"enable_access_log": False},
    )
