"""The cluster-wide actors' ``reconfigure`` as plain objects (no Ray): what a
redeploy changes in each, and what each keeps."""

from __future__ import annotations

import asyncio

from nemo_turnlog.alerts import AlertEvaluator, AlertRule
from nemo_turnlog.export_testing import sample_turn
from nemo_turnlog.metrics import MetricsRecorder, WindowSummary
from router.config import parse_config
from router.errors import ModelNotFound


def summary(ttft_p99_s: float) -> WindowSummary:
    return WindowSummary(50, 0, 0.0, 50.0, 0.2, ttft_p99_s, 0.5, 1.0)


def test_an_unchanged_alert_rule_keeps_its_state_and_a_new_one_starts_fresh():
    slow = AlertRule("ttft_p99_s", 0.3, model_group="g", min_turns=1, cooldown_s=0, name="slow")
    alerts = AlertEvaluator([slow])
    assert [t.state for t in alerts.evaluate(lambda _: {"g": summary(0.5)})] == ["firing"]
    added = AlertRule("ttft_p99_s", 0.1, model_group="g", min_turns=1, cooldown_s=0, name="added")
    alerts = alerts.carried([added, slow])
    transitions = alerts.evaluate(lambda _: {"g": summary(0.5)})
    assert [(t.rule.name, t.state) for t in transitions] == [("added", "firing")]  # "slow" does not fire again
    assert {rule.name for rule, _ in alerts.firing()} == {"slow", "added"}
    assert alerts.carried([added]).firing() == [(added, "g")]


def test_the_hub_keeps_its_metrics_unless_the_slots_change_and_takes_new_rules():
    from deployments.metrics_hub import MetricsHub

    async def scenario():
        hub = MetricsHub(window_s=60, slot_s=10)
        recorder = MetricsRecorder(10)
        for _ in range(5):
            recorder.observe(sample_turn(ttft_s=0.1))
        await hub.report(recorder.take())
        rule = AlertRule("ttft_p99_s", 0.01, model_group="*", min_turns=1, cooldown_s=0, window_s=60, name="new")
        await hub.reconfigure(60, 10, (rule,), None, 5.0)
        kept = (await hub.snapshot_json())["model_groups"]["voice-fast"]["turns"]
        fired = await hub.evaluate_alerts()
        await hub.reconfigure(120, 5, (rule,), None, 5.0)
        restarted = (await hub.snapshot_json())["model_groups"]
        return kept, fired, restarted

    kept, fired, restarted = asyncio.run(scenario())
    assert kept == 5 and len(fired) == 1 and "new" in fired[0]
    assert restarted == {}


def test_the_keystore_keeps_spend_across_a_key_change(tmp_path):
    from deployments.keystore import KeyStore
    from router.config_observability import TurnLogConfig
    from router.keys import ApiKeyConfig, AuthConfig, hash_key

    kept = ApiKeyConfig(name="kept", hash=hash_key("sk-kept"), credit_usd=1.0)
    turn_log = TurnLogConfig(sink="local", path=str(tmp_path))
    store = KeyStore(AuthConfig(keys=(kept, ApiKeyConfig(name="gone", hash=hash_key("sk-gone"), credit_usd=1.0))), turn_log)
    store.charge("kept", 0.25, 0.0, "r1", 1)
    store.charge("gone", 0.25, 0.0, "r2", 2)
    new = ApiKeyConfig(name="new", hash=hash_key("sk-new"), credit_usd=2.0)
    store.reconfigure(AuthConfig(keys=(kept.model_copy(update={"credit_usd": 3.0}), new)), turn_log)
    assert store.allowance("kept").credit_remaining_usd == 2.75  # spend kept, new credit
    assert store.allowance("new").credit_remaining_usd == 2.0
    assert store.allowance("gone") is None


def test_the_tracker_routes_a_new_group_after_reconfigure_and_skips_an_unchanged_one():
    from deployments.tracker import LatencyTracker

    def config(*groups, **extra):
        return parse_config({"model_groups": {g: {"endpoints": [{"name": f"{g}-1", "base_url": "http://x/v1", "model": "m"}]}
                                              for g in groups}, **extra})

    tracker = LatencyTracker(config("a"))
    try:
        tracker.plan(("b", (), False, 1, True, None))
        raise AssertionError("planned an unknown group")
    except ModelNotFound:
        pass
    assert tracker.reconfigure(config("a", cache={"enabled": False})) is False  # routing unchanged
    assert tracker.reconfigure(config("a", "b")) is True
    assert tracker.plan(("b", (), False, 1, True, "t1")).endpoints == ("b-1",)
    assert tracker.snapshot()["b-1"]["in_flight"] == 1


def test_the_cache_empties_only_when_its_block_changes():
    from deployments.cache_actor import ResponseCacheActor
    from router.response_cache import CacheConfig, CachedTurn

    actor = ResponseCacheActor(CacheConfig(enabled=True))
    entry = CachedTurn(chunks_json=b"[]", completion_json=b"{}", usage=None, endpoint="e", provider="openai")
    assert actor.put("k", entry)
    actor.reconfigure(CacheConfig(enabled=True))
    assert actor.get("k") is not None
    actor.reconfigure(CacheConfig(enabled=True, ttl_s=5))
    assert actor.get("k") is None
