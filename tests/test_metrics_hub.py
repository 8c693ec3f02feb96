"""MetricsHub and MetricsReporter as plain objects (no Ray): the shell around the pure classes."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from deployments.metrics_hub import MetricsHub, MetricsReporter
from nemo_turnlog.alerts import AlertRule
from nemo_turnlog.export_testing import LocalHttpReceiver, sample_turn


def test_reporters_batch_deltas_and_the_hub_serves_json_and_prometheus():
    hub = MetricsHub(window_s=60, slot_s=10)

    async def scenario():
        sent = []

        def send(delta):
            sent.append(delta)
            asyncio.get_running_loop().create_task(hub.report(delta))  # fire and forget, like .remote()

        replicas = [MetricsReporter(send, interval_s=0.02) for _ in range(2)]
        for i in range(40):
            replicas[i % 2].observe(sample_turn(ttft_s=0.1 if i % 4 else 0.4))
        assert sent == []  # observe never sends on the turn's path
        await asyncio.sleep(0.1)
        assert len(sent) == 2  # one delta per replica, not one per turn
        return await hub.snapshot_json(), await hub.prometheus_text()

    body, text = asyncio.run(scenario())
    group = body["model_groups"]["voice-fast"]
    assert group["turns"] == 40 and group["ttft_p99_s"] == pytest.approx(0.4, rel=0.01)
    turns = {f.name: f for f in text_string_to_metric_families(text)}["nemo_turns"]
    assert turns.samples[0].value == 40


def test_alert_loop_posts_to_the_webhook_named_by_the_environment(monkeypatch):
    path = "/hooks/secret"
    with LocalHttpReceiver() as receiver:
        monkeypatch.setenv("TEST_ALERT_WEBHOOK", receiver.url + path)
        rule = AlertRule("error_rate", 0.2, window_s=30, min_turns=5, cooldown_s=0)
        hub = MetricsHub(
            window_s=60, slot_s=10, alert_rules=[rule], webhook_url_env="TEST_ALERT_WEBHOOK", evaluate_interval_s=0.02
        )

        async def scenario():
            reporter = MetricsReporter(lambda delta: asyncio.get_running_loop().create_task(hub.report(delta)), interval_s=0.01)
            for _ in range(10):
                reporter.observe(sample_turn(status="error", endpoint=None, ttft_s=None))
            await asyncio.sleep(0.2)
            return await hub.firing()

        firing = asyncio.run(scenario())
        [posted] = receiver.wait_for(1)
    assert firing == [{"rule": "error_rate > 0.2", "model_group": "voice-fast"}]
    assert posted.path == path and "[FIRING]" in posted.json()["text"]


def test_rules_longer_than_the_window_are_refused():
    with pytest.raises(ValueError):
        MetricsHub(window_s=60, alert_rules=[AlertRule("error_rate", 0.1, window_s=120)])


def test_a_failing_send_is_logged_not_raised(caplog):
    def broken(delta):
        raise ConnectionError("hub restarting")

    reporter = MetricsReporter(broken)
    reporter.observe(sample_turn())  # no running loop here: kept for flush()
    reporter.flush()
    assert "could not report metrics for 1 turns" in caplog.text
