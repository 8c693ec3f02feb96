"""Alerts on keys' spend, posted through the same webhook as the latency
alerts (``nemo_turnlog.alerts.WebhookNotifier``).

A ``SpendAlertRule`` fires for a key (``key="*"``: each metered key) when
the share of its money used reaches ``threshold``:

- ``budget_used``: this period's spend / ``budget_usd`` (keys with a budget);
- ``credit_used``: spend / credit granted (config plus top-ups; keys with a credit).

and resolves when it drops below again (a new period, a top-up). The
keystore evaluates a key's rules each time the key is charged or topped up,
so an alert fires on the turn that crosses the line, not on a timer.
``cooldown_s`` (default 0) spaces two changes of state of one rule and key.
States are in memory: after the keystore restarts, a key still over the
line fires again on its next charge.

``SpendAlertEvaluator`` is pure: it returns ``SpendAlertTransition``s, which
the notifier logs and posts (they have the ``state`` and ``text()`` of
``AlertTransition``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["SPEND_METRICS", "SpendAlertRule", "SpendAlertTransition", "SpendAlertEvaluator"]

SPEND_METRICS = ("budget_used", "credit_used")


@dataclass(frozen=True, slots=True)
class SpendAlertRule:
    """Fire when ``metric`` (a share, 0.8 = 80 %) of ``key`` reaches ``threshold``."""

    metric: str
    threshold: float
    key: str = "*"
    cooldown_s: float = 0.0
    name: str = ""

    def __post_init__(self) -> None:
        if self.metric not in SPEND_METRICS:
            raise ValueError(f"spend alert metric must be one of {SPEND_METRICS}, got {self.metric!r}")
        if not (math.isfinite(self.threshold) and self.threshold > 0) or self.cooldown_s < 0:
            raise ValueError(f"need a finite threshold > 0 and cooldown_s >= 0 in {self}")
        if not self.name:
            object.__setattr__(self, "name", f"{self.metric} >= {self.threshold:.0%}")


@dataclass(frozen=True, slots=True)
class SpendAlertTransition:
    rule: SpendAlertRule
    key: str
    state: Literal["firing", "resolved"]
    value: float
    at_s: float

    def text(self) -> str:
        head = "FIRING" if self.state == "firing" else "RESOLVED"
        what = "this period's budget" if self.rule.metric == "budget_used" else "its credit"
        return f"[{head}] {self.rule.name} for key {self.key}: {self.value:.1%} of {what} used (threshold {self.rule.threshold:.0%})"


class SpendAlertEvaluator:
    def __init__(self, rules: Sequence[SpendAlertRule], clock: Callable[[], float] = time.monotonic):
        self.rules = tuple(rules)
        self._clock = clock
        self._firing: dict[tuple[int, str], tuple[bool, float]] = {}  # (rule, key) -> (firing, changed at)

    def observe(self, key: str, used: Mapping[str, float | None]) -> list[SpendAlertTransition]:
        """The key's shares used now (a metric the key does not have: None)."""
        now = self._clock()
        transitions = []
        for index, rule in enumerate(self.rules):
            value = used.get(rule.metric)
            if value is None or rule.key not in ("*", key):
                continue
            firing, changed_at = self._firing.get((index, key), (False, -math.inf))
            over = value >= rule.threshold
            if over == firing or now - changed_at < rule.cooldown_s:
                continue
            self._firing[(index, key)] = (over, now)
            transitions.append(SpendAlertTransition(rule, key, "firing" if over else "resolved", value, now))
        return transitions
