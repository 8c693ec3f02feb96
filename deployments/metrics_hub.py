"""The ``MetricsHub``: one named, detached Ray actor that merges every caller
replica's turn metrics and evaluates the alert rules.

A thin async shell over ``nemo_turnlog.metrics.MetricsAggregator`` and
``nemo_turnlog.alerts.AlertEvaluator``. Caller replicas feed it through a
``MetricsReporter``: ``observe(record)`` per turn (a local, in-memory
update), one fire-and-forget ``report(delta)`` per ``interval_s``. The
ingress reads ``snapshot_json()`` for ``GET /v1/metrics`` and
``exposition(accept, upstreams)`` for ``GET /metrics`` (rendered here, from
the merged stats, with the tracker's routing state the ingress passes in),
and ``console_state(...)`` / ``console_turn(seq)`` for the dashboard
(``nemo_turnlog.dashboard``: series and recent turns as deltas). Every ``evaluate_interval_s``
the hub evaluates the rules; transitions are logged and, when the
environment variable named by ``webhook_url_env`` is set where the hub
runs, posted to that webhook. The URL is read there, once, at start-up:
it never travels through Ray as an argument.

The hub's state is in memory: if it restarts, the window refills within
``window_s`` and Prometheus sees a counter reset, which ``rate()`` handles.
A redeploy reconfigures it in place (``reconfigure``): the merged metrics
are kept while ``window_s`` and ``slot_s`` are unchanged (else they start
afresh), unchanged alert rules keep their state, and the webhook URL is
read again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence

from nemo_turnlog.alerts import AlertEvaluator, AlertRule, WebhookNotifier, log_transition
from nemo_turnlog.dashboard import DashboardState, Since
from nemo_turnlog.metrics import MetricsAggregator, MetricsDelta, MetricsRecorder
from nemo_turnlog.prometheus import UpstreamState, render, render_prometheus
from nemo_turnlog.recent_turns import TurnFilter
from nemo_turnlog.record import TurnRecord

__all__ = ["MetricsHub", "MetricsReporter", "get_or_create_metrics_hub"]

log = logging.getLogger(__name__)


class MetricsHub:
    """Merged metrics and alerts; see the module docstring. Defaults: a
    300 s window of 10 s slots, alerts evaluated every 5 s, the dashboard's
    last 5000 turns."""

    def __init__(
        self,
        window_s: float = 300.0,
        slot_s: float = 10.0,
        alert_rules: Sequence[AlertRule] = (),
        webhook_url_env: str | None = None,
        evaluate_interval_s: float = 5.0,
        recent_turns: int = 5000,
    ):
        _check_windows(alert_rules, window_s)
        self._slots = (window_s, slot_s)
        self._metrics = MetricsAggregator(window_s, slot_s)
        self._dashboard = DashboardState(self._metrics, recent_turns)
        self._alerts = AlertEvaluator(alert_rules)
        self._notifier = _notifier(webhook_url_env, alert_rules)
        self._interval_s = evaluate_interval_s
        self._alert_task: asyncio.Task | None = None

    async def reconfigure(
        self,
        window_s: float = 300.0,
        slot_s: float = 10.0,
        alert_rules: Sequence[AlertRule] = (),
        webhook_url_env: str | None = None,
        evaluate_interval_s: float = 5.0,
        recent_turns: int = 5000,
    ) -> None:
        """Merge and alert by these settings from now on (a redeploy; the
        constructor's arguments), keeping what still applies. A dashboard
        that polls after a change of slots or ring size starts afresh."""
        _check_windows(alert_rules, window_s)
        if (window_s, slot_s) != self._slots:
            self._slots = (window_s, slot_s)
            self._metrics = MetricsAggregator(window_s, slot_s)
            self._dashboard = DashboardState(self._metrics, recent_turns)
        elif recent_turns != self._dashboard.recent.capacity:
            self._dashboard = DashboardState(self._metrics, recent_turns)
        self._alerts = self._alerts.carried(alert_rules)
        self._notifier = _notifier(webhook_url_env, alert_rules)
        if evaluate_interval_s != self._interval_s and self._alert_task is not None:
            self._alert_task.cancel()  # the loop sleeps by the old interval
            self._alert_task = None
        self._interval_s = evaluate_interval_s
        self._start_alert_loop()

    async def report(self, delta: MetricsDelta) -> None:
        self._start_alert_loop()
        self._metrics.merge(delta)
        self._dashboard.merged(delta)

    async def snapshot_json(self, window_s: float | None = None) -> dict:
        self._start_alert_loop()
        return self._metrics.to_json(window_s)

    async def console_state(
        self, since: Since, turns_since: int, turn_filter: TurnFilter, turns_limit: int, routing: dict | None
    ) -> dict:
        """The dashboard's poll (``DashboardState.state``): what changed
        after the cursors; ``routing``: the tracker's snapshot, or None."""
        self._start_alert_loop()
        return self._dashboard.state(since, routing, await self.firing(), turns_since, turn_filter, turns_limit)

    async def console_turn(self, seq: int) -> dict | None:
        """One recent turn with its attempts, or None once it left the ring."""
        return self._dashboard.turn(seq)

    async def prometheus_text(self) -> str:
        return render_prometheus(self._metrics.lifetime())

    async def exposition(self, accept: str | None = None, upstreams: Sequence[UpstreamState] = ()) -> tuple[bytes, str]:
        """``GET /metrics``: the body and content type for the scraper's
        ``Accept`` (``nemo_turnlog.prometheus.render``)."""
        return render(self._metrics.lifetime(), upstreams, accept)

    async def evaluate_alerts(self) -> list[str]:
        """Evaluate the rules now; the transitions' texts (tests, operators)."""
        transitions = self._alerts.evaluate(self._metrics.by_group)
        for transition in transitions:
            if self._notifier is not None:
                self._notifier.notify(transition)
            else:
                log_transition(transition)
        return [t.text() for t in transitions]

    async def firing(self) -> list[dict]:
        return [{"rule": rule.name, "model_group": group} for rule, group in self._alerts.firing()]

    async def ping(self) -> bool:
        self._start_alert_loop()
        return True

    def _start_alert_loop(self) -> None:
        # Started from the first call: an async actor's loop is running by
        # then, which __init__ cannot count on.
        if self._alerts.rules and (self._alert_task is None or self._alert_task.done()):
            self._alert_task = asyncio.get_running_loop().create_task(self._alert_loop())

    async def _alert_loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.evaluate_alerts()
            except Exception:  # one bad evaluation must not end alerting
                log.exception("alert evaluation failed")


def _check_windows(alert_rules: Sequence[AlertRule], window_s: float) -> None:
    too_long = [r.name for r in alert_rules if r.window_s > window_s]
    if too_long:
        raise ValueError(f"alert rules {too_long} have a window longer than the metrics window ({window_s} s)")


def _notifier(webhook_url_env: str | None, alert_rules: Sequence[AlertRule]) -> WebhookNotifier | None:
    url = os.environ.get(webhook_url_env) if webhook_url_env else None
    return WebhookNotifier(url) if url and alert_rules else None


def get_or_create_metrics_hub(
    *,
    name: str = "nemo-metrics-hub",
    namespace: str = "nemo-router",
    window_s: float = 300.0,
    slot_s: float = 10.0,
    alert_rules: Sequence[AlertRule] = (),
    webhook_url_env: str | None = None,
    evaluate_interval_s: float = 5.0,
    recent_turns: int = 5000,
    resources: dict[str, float] | None = None,
):
    """The hub ``name``: created once, found by name afterwards and
    reconfigured with these settings (``deployments.named_actor.configured_actor``)."""
    from deployments.named_actor import configured_actor  # here, so the pure classes above import without Ray

    return configured_actor(
        MetricsHub, name, namespace, window_s, slot_s, tuple(alert_rules), webhook_url_env, evaluate_interval_s, recent_turns,
        resources=resources,
    )


class MetricsReporter:
    """Per caller replica: records turns locally and sends deltas in batches.

    ``observe`` updates in-memory stats (a few microseconds) and makes sure
    a background task is running; the task sends what accumulated every
    ``interval_s`` (default 1 s) with one fire-and-forget ``send(delta)``,
    e.g. ``hub.report.remote``, and stops when there is nothing left.
    ``slot_s`` must match the hub's.
    """

    def __init__(self, send: Callable[[MetricsDelta], object], interval_s: float = 1.0, slot_s: float = 10.0):
        self._send = send
        self._interval_s = interval_s
        self._recorder = MetricsRecorder(slot_s)
        self._task: asyncio.Task | None = None

    def observe(self, record: TurnRecord) -> None:
        self._recorder.observe(record)
        if self._task is None or self._task.done():
            try:
                self._task = asyncio.get_running_loop().create_task(self._run())
            except RuntimeError:  # no loop on this thread: the next observe on the loop, or flush(), sends it
                pass

    def flush(self) -> None:
        delta = self._recorder.take()
        if delta is None:
            return
        try:
            self._send(delta)
        except Exception:  # the hub may be restarting: metrics are best effort
            log.warning("could not report metrics for %d turns to the hub", delta.turns(), exc_info=True)

    async def _run(self) -> None:
        while self._recorder.pending:
            await asyncio.sleep(self._interval_s)
            self.flush()
