"""Alert rules, the evaluator (fake clock) and the webhook notifier (real local receiver)."""

from __future__ import annotations

import logging
import pickle

import pytest

from nemo_turnlog.alerts import AlertEvaluator, AlertRule, WebhookNotifier, slack_payload
from nemo_turnlog.delivery import RetryPolicy
from nemo_turnlog.export_testing import LocalHttpReceiver, sample_turn
from nemo_turnlog.metrics import MetricsAggregator, WindowSummary

FAST_RETRIES = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)


class FakeClock:
    def __init__(self, now_s: float = 1_000_000.0):
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def summary(turns: int = 50, ttft_p99_s: float | None = 0.5, error_rate: float = 0.0) -> WindowSummary:
    errors = round(turns * error_rate)
    return WindowSummary(turns, errors, error_rate, turns / 1.0, 0.2, ttft_p99_s, 0.5, 1.0)


class Feed:
    """What the aggregator would say, set by the test."""

    def __init__(self, **groups: WindowSummary):
        self.groups = groups
        self.windows: list[float] = []

    def __call__(self, window_s: float) -> dict[str, WindowSummary]:
        self.windows.append(window_s)
        return dict(self.groups)


def test_fires_once_above_threshold_then_resolves_after_cooldown():
    clock = FakeClock()
    rule = AlertRule("ttft_p99_s", 1.0, model_group="voice-fast", window_s=60, min_turns=20, cooldown_s=120)
    alerts = AlertEvaluator([rule], clock=clock)
    feed = Feed(**{"voice-fast": summary(ttft_p99_s=0.4)})
    assert alerts.evaluate(feed) == []

    feed.groups["voice-fast"] = summary(ttft_p99_s=1.6)
    [fired] = alerts.evaluate(feed)
    assert (fired.state, fired.model_group, fired.value) == ("firing", "voice-fast", 1.6)
    assert "FIRING" in fired.text() and "1.600 s" in fired.text()
    clock.now_s += 5
    assert alerts.evaluate(feed) == []  # still firing: posted once, not repeated
    assert alerts.firing() == [(rule, "voice-fast")]

    feed.groups["voice-fast"] = summary(ttft_p99_s=0.3)
    clock.now_s += 60
    assert alerts.evaluate(feed) == []  # recovered, but within the cooldown
    clock.now_s += 60
    [resolved] = alerts.evaluate(feed)
    assert resolved.state == "resolved" and "RESOLVED" in resolved.text()
    assert feed.windows[-1] == 60


def test_min_turns_keeps_quiet_groups_from_deciding():
    rule = AlertRule("error_rate", 0.1, min_turns=20, cooldown_s=0)
    alerts = AlertEvaluator([rule], clock=FakeClock())
    assert alerts.evaluate(Feed(g=summary(turns=19, error_rate=1.0))) == []
    [fired] = alerts.evaluate(Feed(g=summary(turns=20, error_rate=0.5)))
    assert fired.state == "firing" and "50.0%" in fired.text()
    assert alerts.evaluate(Feed(g=summary(turns=3, error_rate=0.0))) == []  # too few turns to resolve
    assert alerts.evaluate(Feed(g=summary(turns=30, error_rate=0.0)))[0].state == "resolved"


def test_cooldown_stops_flapping_and_star_rules_track_each_group():
    clock = FakeClock()
    alerts = AlertEvaluator([AlertRule("ttft_p99_s", 1.0, cooldown_s=300)], clock=clock)
    high, low = summary(ttft_p99_s=2.0), summary(ttft_p99_s=0.1)
    states = []
    for step in range(20):  # the metric flips every 10 s for 200 s
        clock.now_s += 10
        feed = Feed(a=high if step % 2 == 0 else low, b=low)
        states += [(t.model_group, t.state) for t in alerts.evaluate(feed)]
    assert states == [("a", "firing")]
    clock.now_s += 300
    assert [(t.model_group, t.state) for t in alerts.evaluate(Feed(a=low, b=high))] == [("a", "resolved"), ("b", "firing")]


def test_no_data_is_not_above_the_threshold_and_rules_are_validated():
    alerts = AlertEvaluator([AlertRule("ttft_p99_s", 1.0, min_turns=1)], clock=FakeClock())
    assert alerts.evaluate(Feed(g=summary(ttft_p99_s=None))) == []
    with pytest.raises(ValueError):
        AlertRule("p95", 1.0)
    with pytest.raises(ValueError):
        AlertRule("error_rate", 0.1, min_turns=0)
    rule = AlertRule("error_rate", 0.05)
    assert rule.name == "error_rate > 0.05"
    assert pickle.loads(pickle.dumps(rule)) == rule  # rules travel to the hub actor


def test_slack_payload_has_text_and_a_section_block():
    [fired] = AlertEvaluator([AlertRule("error_rate", 0.1, min_turns=1)]).evaluate(Feed(g=summary(error_rate=0.4)))
    payload = slack_payload(fired)
    assert payload["text"].startswith("nemo-router: [FIRING]")
    assert payload["blocks"][0]["type"] == "section" and payload["blocks"][0]["text"]["type"] == "mrkdwn"


def test_a_slow_endpoint_fires_and_recovery_resolves_through_the_webhook(caplog):
    """Metrics from a slowed endpoint -> evaluator -> webhook, with a 503 retried."""
    caplog.set_level(logging.DEBUG)
    secret_path = "/services/T0/B0/webhook-secret-token"
    clock = FakeClock()
    hub = MetricsAggregator(window_s=60, slot_s=10, clock=clock)
    alerts = AlertEvaluator([AlertRule("ttft_p99_s", 0.5, model_group="voice-fast", window_s=30, cooldown_s=30)], clock=clock)
    with LocalHttpReceiver(script={secret_path: [503]}) as receiver:
        notifier = WebhookNotifier(receiver.url + secret_path, policy=FAST_RETRIES)
        for _ in range(30):
            hub.observe(sample_turn(ttft_s=0.9, endpoint="sim-slow"))  # the endpoint was made slow
        for transition in alerts.evaluate(hub.by_group):
            notifier.notify(transition)
        clock.now_s += 40  # the slow turns leave the 30 s window
        for _ in range(30):
            hub.observe(sample_turn(ttft_s=0.1))
        for transition in alerts.evaluate(hub.by_group):
            notifier.notify(transition)
        first_try, fired, resolved = receiver.wait_for(3)
        notifier.close()
    assert first_try.body == fired.body and first_try.path == secret_path
    assert "[FIRING]" in fired.json()["text"]
    assert "[RESOLVED]" in resolved.json()["text"]
    assert fired.headers["content-type"] == "application/json"
    assert notifier.stats()["delivered"] == 2
    assert "alert: [FIRING]" in caplog.text and "alert: [RESOLVED]" in caplog.text
    assert "webhook-secret-token" not in caplog.text and "webhook-secret-token" not in repr(notifier)


def test_a_groups_spend_per_hour_over_its_threshold_fires():
    """Spend is summed over the window (across replicas' merged stats) and
    read as an hourly rate: $0.10 of turns in a 60 s window is $6/h."""
    clock = FakeClock()
    hub = MetricsAggregator(window_s=60, slot_s=10, clock=clock)
    rule = AlertRule("spend_usd_per_hour", 5.0, model_group="*", window_s=60, min_turns=10, cooldown_s=0)
    alerts = AlertEvaluator([rule], clock=clock)
    clock.now_s += 60  # older than its window: the rate is over the whole window
    for _ in range(20):
        hub.observe(sample_turn(cost_usd=0.002))  # $0.04: $2.40/h
    assert alerts.evaluate(hub.by_group) == []
    assert hub.by_group(60)["voice-fast"].spend_usd_per_hour == pytest.approx(0.04 * 60, rel=0.2)
    for _ in range(30):
        hub.observe(sample_turn(cost_usd=0.002))  # $0.10 in all
    [fired] = alerts.evaluate(hub.by_group)
    assert fired.state == "firing" and fired.model_group == "voice-fast"
    assert "spend_usd_per_hour" in fired.text() and "/h" in fired.text()
    clock.now_s += 120  # the window empties; unpriced turns follow
    for _ in range(20):
        hub.observe(sample_turn(cost_usd=None))
    [resolved] = alerts.evaluate(hub.by_group)
    assert resolved.state == "resolved"
