"""The provider-caller deployment: the replicas that talk to upstreams.

A thin Ray Serve shell around ``TurnRunner``: it owns the pooled HTTP
client, the outcome reporter and this replica's turn-log writer.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import ray
from ray import serve

from router.catalog import endpoint_prices, load_catalog
from router.config import RouterConfig
from turnlog import LocalParquetSink, S3ParquetSink, SpoolingSink, TurnLogWriter

from deployments.reporter import OutcomeReporter
from deployments.turn_runner import TurnFailure, TurnHead, TurnRequest, TurnRunner
from deployments.upstream import UpstreamPool, resolve_api_keys

__all__ = ["ProviderCaller"]


class ProviderCaller:
    def __init__(self, config: RouterConfig):
        endpoints = [e for g in config.model_groups.values() for e in g.endpoints]
        # Keys are read once, here, at replica start-up; they live only in
        # the pool's request headers.
        self._pool = UpstreamPool(resolve_api_keys(endpoints, os.environ))
        tracker = ray.get_actor(config.deployments.tracker_name, namespace=config.deployments.tracker_namespace)
        self._reporter = OutcomeReporter(tracker.report.remote, config.deployments.report_interval_s)
        self._writer = _turn_log_writer(config)
        prices = endpoint_prices(load_catalog(), endpoints)
        self._runner = TurnRunner(config, self._pool, self._reporter.add, self._emit, prices=prices)

    def _emit(self, record) -> None:
        if self._writer is not None:
            self._writer.emit(record)

    async def stream_turn(self, request: TurnRequest) -> AsyncIterator[TurnHead | TurnFailure | bytes]:
        async for item in self._runner.stream(request):
            yield item

    async def complete_turn(self, request: TurnRequest) -> tuple[TurnHead, bytes] | TurnFailure:
        return await self._runner.complete(request)

    def flush_turn_log(self) -> dict:
        """Write buffered turn records now (tests, graceful shutdown)."""
        if self._writer is None:
            return {}
        self._writer.flush()
        return self._writer.stats()

    def __del__(self):
        writer = getattr(self, "_writer", None)
        if writer is not None:
            writer.close()


def _turn_log_writer(config: RouterConfig) -> TurnLogWriter | None:
    settings = config.turn_log
    if settings.sink == "none":
        return None
    replica_id = f"caller-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    if settings.sink == "s3":
        s3 = settings.s3
        sink = SpoolingSink(
            S3ParquetSink(s3.bucket, s3.prefix, replica_id, region=s3.region, endpoint_url=s3.endpoint_url),
            settings.spool.path,
            max_spool_bytes=settings.spool.max_bytes,
            retry_backoff_s=settings.spool.retry_backoff_s,
        )
    else:
        sink = LocalParquetSink(settings.path, replica_id)
    return TurnLogWriter(sink, flush_interval_s=settings.flush_interval_s, flush_max_records=settings.flush_max_records)


def caller_deployment(config: RouterConfig):
    options = config.deployments
    return serve.deployment(
        ProviderCaller,
        name="ProviderCaller",
        num_replicas=options.caller_replicas,
        max_ongoing_requests=options.caller_max_ongoing_requests,
        ray_actor_options={"num_cpus": 0},
        # Serve's per-request access log costs CPU on every turn; the turn
        # log records every turn already.
        logging_config={"enable_access_log": False},
    )
