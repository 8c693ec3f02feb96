"""Threshold alerts on the merged metrics, posted to a webhook and logged.

An ``AlertRule`` says: when ``metric`` of a model group (or of each group,
``model_group="*"``) over the last ``window_s`` seconds is above
``threshold``, fire. Metrics: ``ttft_p99_s`` and ``total_p99_s`` (seconds),
``error_rate`` (0 to 1) and ``spend_usd_per_hour`` (a group's spend over the
window, as an hourly rate), as ``WindowSummary`` computes them.

``AlertEvaluator`` is pure: given the summaries it returns transitions, one
``AlertTransition`` per rule and group that starts ``firing`` or is
``resolved``. Guards against noise and flapping:

- ``min_turns``: a window with fewer turns decides nothing; the state
  stays as it was (a firing alert whose traffic stops stays firing until
  there is enough traffic to show it is over);
- ``cooldown_s``: at least this long between two transitions of the same
  rule and group, so an alert resolves no sooner than ``cooldown_s`` after
  it fired and cannot fire again sooner than ``cooldown_s`` after it
  resolved. A firing alert is posted once, not repeated.

``WebhookNotifier`` logs each transition (WARNING when firing, INFO when
resolved) and POSTs a Slack-compatible message (``text`` plus one
``section`` block) to the webhook on its own thread, with retries. The
webhook URL is a secret (Slack's carries its token): never logged.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import httpx

from nemo_turnlog.delivery import HttpPoster, Outbox, RetryPolicy, Secret
from nemo_turnlog.metrics import WindowSummary

__all__ = [
    "ALERT_METRICS",
    "AlertEvaluator",
    "AlertRule",
    "AlertTransition",
    "WebhookNotifier",
    "log_transition",
    "slack_payload",
]

logger = logging.getLogger(__name__)

ALERT_METRICS = ("ttft_p99_s", "total_p99_s", "error_rate", "spend_usd_per_hour")
AlertState = Literal["firing", "resolved"]


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One threshold rule; defaults: every group, 60 s window, 20 turns at
    least, 300 s cooldown. ``name`` defaults to ``"<metric> > <threshold>"``."""

    metric: str
    threshold: float
    model_group: str = "*"
    window_s: float = 60.0
    min_turns: int = 20
    cooldown_s: float = 300.0
    name: str = ""

    def __post_init__(self) -> None:
        if self.metric not in ALERT_METRICS:
            raise ValueError(f"alert metric must be one of {ALERT_METRICS}, got {self.metric!r}")
        if not (math.isfinite(self.threshold) and self.threshold >= 0):
            raise ValueError(f"alert threshold must be a finite number >= 0, got {self.threshold}")
        if self.window_s <= 0 or self.min_turns < 1 or self.cooldown_s < 0:
            raise ValueError(f"need window_s > 0, min_turns >= 1, cooldown_s >= 0 in {self}")
        if not self.name:
            object.__setattr__(self, "name", f"{self.metric} > {self.threshold:g}")


@dataclass(frozen=True, slots=True)
class AlertTransition:
    """A rule started firing or resolved for one model group at ``at_s``
    (the evaluator's clock); ``value`` is the metric then."""

    rule: AlertRule
    model_group: str
    state: AlertState
    value: float | None
    turns: int
    at_s: float

    def text(self) -> str:
        rule = self.rule
        if rule.metric == "error_rate":
            value, threshold = _percent(self.value), _percent(rule.threshold)
        elif rule.metric == "spend_usd_per_hour":
            value, threshold = _dollars_per_hour(self.value), _dollars_per_hour(rule.threshold)
        else:
            value, threshold = _seconds(self.value), _seconds(rule.threshold)
        head = "FIRING" if self.state == "firing" else "RESOLVED"
        return (
            f"[{head}] {rule.name} for model group {self.model_group}: {rule.metric} is {value} "
            f"(threshold {threshold}) over the last {rule.window_s:g} s, {self.turns} turns"
        )


def _dollars_per_hour(value: float | None) -> str:
    return "n/a" if value is None else f"${value:.2f}/h"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


@dataclass(slots=True)
class _State:
    firing: bool = False
    changed_at_s: float | None = None


class AlertEvaluator:
    """Turns summaries into firing/resolved transitions; see the module docstring.

    ``clock`` (seconds, monotonic) only times cooldowns.
    """

    def __init__(self, rules: Sequence[AlertRule], clock: Callable[[], float] = time.monotonic):
        self.rules = tuple(rules)
        self._clock = clock
        self._states: dict[tuple[int, str], _State] = {}

    def evaluate(self, summaries: Callable[[float], Mapping[str, WindowSummary]]) -> list[AlertTransition]:
        """``summaries(window_s)`` gives each model group's summary over that window."""
        now = self._clock()
        transitions = []
        by_window: dict[float, Mapping[str, WindowSummary]] = {}
        for index, rule in enumerate(self.rules):
            if rule.window_s not in by_window:
                by_window[rule.window_s] = summaries(rule.window_s)
            for group, summary in self._matching(rule, by_window[rule.window_s]):
                transition = self._step(index, rule, group, summary, now)
                if transition is not None:
                    transitions.append(transition)
        return transitions

    def carried(self, rules: Sequence[AlertRule]) -> "AlertEvaluator":
        """An evaluator of ``rules`` (a redeploy) in which each rule this
        one also has keeps its state per group (firing, and since when), so
        an unchanged rule neither fires again nor forgets its cooldown."""
        evaluator = AlertEvaluator(rules, self._clock)
        old_index = {rule: index for index, rule in enumerate(self.rules)}
        for index, rule in enumerate(evaluator.rules):
            if rule in old_index:
                for (i, group), state in self._states.items():
                    if i == old_index[rule]:
                        evaluator._states[(index, group)] = state
        return evaluator

    def firing(self) -> list[tuple[AlertRule, str]]:
        """The rules and groups firing now."""
        return [(self.rules[i], group) for (i, group), s in sorted(self._states.items()) if s.firing]

    def _matching(self, rule: AlertRule, summaries: Mapping[str, WindowSummary]) -> Iterable[tuple[str, WindowSummary]]:
        if rule.model_group == "*":
            return sorted(summaries.items())
        summary = summaries.get(rule.model_group)
        return [] if summary is None else [(rule.model_group, summary)]

    def _step(self, index: int, rule: AlertRule, group: str, summary: WindowSummary, now: float) -> AlertTransition | None:
        if summary.turns < rule.min_turns:
            return None
        state = self._states.setdefault((index, group), _State())
        value = getattr(summary, rule.metric)
        above = value is not None and value > rule.threshold
        if above == state.firing:
            return None
        if state.changed_at_s is not None and now - state.changed_at_s < rule.cooldown_s:
            return None
        state.firing, state.changed_at_s = above, now
        return AlertTransition(rule, group, "firing" if above else "resolved", value, summary.turns, now)


def slack_payload(transition: AlertTransition, *, source: str = "nemo-router") -> dict:
    """A Slack incoming-webhook message: ``text`` (the fallback and what
    plain receivers read) and one ``mrkdwn`` section block."""
    text = f"{source}: {transition.text()}"
    icon = ":rotating_light:" if transition.state == "firing" else ":white_check_mark:"
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} {text}"}}]}


def log_transition(transition: AlertTransition) -> None:
    level = logging.WARNING if transition.state == "firing" else logging.INFO
    logger.log(level, "alert: %s", transition.text())


class WebhookNotifier:
    """Logs transitions and posts them to a webhook, off the caller's thread.

    ``stats()`` counts ``delivered``, ``failed`` (gave up after retries)
    and ``dropped`` (queue full, default 1,000 messages).
    """

    def __init__(
        self,
        url: str,
        *,
        source: str = "nemo-router",
        policy: RetryPolicy = RetryPolicy(),
        timeout_s: float = 5.0,
        max_queued: int = 1000,
        transport: httpx.BaseTransport | None = None,
    ):
        self._url = Secret(url)
        self._source = source
        self._poster = HttpPoster("alert webhook", policy=policy, timeout_s=timeout_s, transport=transport)
        self._outbox: Outbox[dict] = Outbox(self._deliver, name="alert-webhook", max_batch=1, max_items=max_queued)

    def notify(self, transition: AlertTransition) -> None:
        log_transition(transition)
        self._outbox.put([slack_payload(transition, source=self._source)])

    def close(self, timeout_s: float = 10.0) -> None:
        self._outbox.close(timeout_s)
        self._poster.close()

    def stats(self) -> dict[str, int]:
        return self._outbox.stats()

    def __repr__(self) -> str:
        return "WebhookNotifier(url=***)"

    def _deliver(self, payloads: list[dict]) -> bool:
        return all(self._poster.post(self._url.reveal(), json=p, headers={}) is not None for p in payloads)
