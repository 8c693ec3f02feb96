"""Alerts on keys' spend: the pure evaluator, the config, and the keystore
firing through its notifier as a key is charged and topped up (no Ray)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nemo_turnlog.alerts import slack_payload
from nemo_turnlog.spend_alerts import SpendAlertEvaluator, SpendAlertRule
from router.simulation import ManualClock


def test_a_rule_fires_once_when_the_share_is_reached_and_resolves_below_it():
    evaluator = SpendAlertEvaluator([SpendAlertRule("budget_used", 0.8)])
    assert evaluator.observe("plan", {"budget_used": 0.5}) == []
    (fired,) = evaluator.observe("plan", {"budget_used": 0.8})
    assert fired.state == "firing" and fired.key == "plan"
    assert "80.0% of this period's budget used" in fired.text()
    assert evaluator.observe("plan", {"budget_used": 0.95}) == []  # posted once
    assert evaluator.observe("other", {"budget_used": 0.1}) == []
    (resolved,) = evaluator.observe("plan", {"budget_used": 0.0})  # a new period
    assert resolved.state == "resolved"
    assert slack_payload(resolved)["text"].startswith("nemo-router: [RESOLVED] budget_used >= 80%")


def test_rules_match_their_key_and_metric_and_keep_their_cooldown():
    clock = ManualClock(0.0)
    evaluator = SpendAlertEvaluator(
        [SpendAlertRule("credit_used", 0.5, key="trial", cooldown_s=60), SpendAlertRule("budget_used", 0.9)], clock=clock
    )
    assert evaluator.observe("other", {"credit_used": 0.99, "budget_used": None}) == []
    assert [t.rule.metric for t in evaluator.observe("trial", {"credit_used": 0.6, "budget_used": 0.95})] == ["credit_used", "budget_used"]
    assert [t.rule.metric for t in evaluator.observe("trial", {"credit_used": 0.1, "budget_used": 0.1})] == ["budget_used"]
    clock.advance(60)
    assert [t.state for t in evaluator.observe("trial", {"credit_used": 0.1})] == ["resolved"]


def test_bad_rules_fail_at_start_up():
    from router.config import parse_config
    from router.errors import ConfigError
    from router.keys import hash_key

    with pytest.raises(ValueError):
        SpendAlertRule("ttft_p99_s", 0.8)
    base = {
        "model_groups": {"g": {"endpoints": [{"name": "e", "base_url": "http://127.0.0.1:9/v1", "model": "m"}]}},
        "auth": {"keys": [{"name": "plan", "hash": hash_key("sk-p"), "budget_usd": 10}, {"name": "free", "hash": hash_key("sk-f")}]},
    }
    ok = parse_config({**base, "metrics": {"spend_alerts": [{"metric": "budget_used", "threshold": 0.8, "key": "plan"}]}})
    assert ok.metrics.spend_alerts[0].key == "plan"
    for rule in ({"metric": "budget_used", "threshold": 0.8, "key": "free"}, {"metric": "budget_used", "threshold": 0},
                 {"metric": "spend", "threshold": 0.5}, {"metric": "credit_used", "threshold": 0.5, "window_s": 60}):
        with pytest.raises((ConfigError, ValidationError)):
            parse_config({**base, "metrics": {"spend_alerts": [rule]}})


def test_the_keystore_alerts_as_a_key_is_charged_and_topped_up(tmp_path):
    from deployments.keystore import KeyStore
    from router.config_observability import TurnLogConfig
    from router.keys import ApiKeyConfig, AuthConfig, hash_key

    auth = AuthConfig(keys=(ApiKeyConfig(name="trial", hash=hash_key("sk-t"), credit_usd=1.0),))
    sent = []
    store = KeyStore(auth, TurnLogConfig(sink="local", path=str(tmp_path)), [SpendAlertRule("credit_used", 0.8)], notify=sent.append)
    store.charge("trial", 0.5, 0.0, "r1", 1)
    assert sent == []
    store.charge("trial", 0.35, 0.0, "r2", 2)
    assert [(t.state, round(t.value, 2)) for t in sent] == [("firing", 0.85)]
    store.top_up("trial", 1.0)
    assert [t.state for t in sent] == ["firing", "resolved"]
