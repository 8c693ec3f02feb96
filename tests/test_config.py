"""Config parsing: pure, no Ray."""

import textwrap

import pytest

from router.config import load_config, parse_config
from router.defaults import DEFAULT_GROUP, embedded_default
from router.errors import ConfigError

GOOD = textwrap.dedent(
    """
    server: {port: 8123, max_body_bytes: 2048}
    model_groups:
      voice-fast:
        timeouts: {first_token_s: 1.5, total_s: 30}
        endpoints:
          - {name: a, base_url: "http://127.0.0.1:9/v1", model: m1, tags: [function-calling]}
          - {name: b, base_url: "https://api.example.com/v1", model: m2, api_key_env: EXAMPLE_KEY, weight: 2}
    turn_log: {path: /tmp/x, flush_interval_s: 1}
    """
)


def test_good_file_parses_into_frozen_runtime_config(tmp_path):
    path = tmp_path / "router.yaml"
    path.write_text(GOOD)
    config = load_config(path)
    group = config.model_groups["voice-fast"]
    assert [e.name for e in group.endpoints] == ["a", "b"]
    assert group.timeouts.first_token_s == 1.5
    assert group.endpoints[1].api_key_env == "EXAMPLE_KEY"
    assert config.server.max_body_bytes == 2048
    assert config.endpoint("b").weight == 2
    with pytest.raises(Exception):
        group.strategy = "other"  # frozen


@pytest.mark.parametrize(
    ("text", "path_fragment", "reason_fragment"),
    [
        (GOOD.replace("weight: 2", "wieght: 2"), "model_groups.voice-fast.endpoints.1.wieght", "Extra inputs"),
        (GOOD.replace("port: 8123", "port: eighty"), "server.port", "integer"),
        (GOOD.replace('"http://127.0.0.1:9/v1"', "ftp://x"), "model_groups.voice-fast.endpoints.0.base_url", "pattern"),
        (GOOD.replace("name: b", "name: a"), "model_groups.voice-fast", "repeat"),
        (GOOD.replace("first_token_s: 1.5", "first_token_s: 99"), "model_groups.voice-fast.timeouts", "first_token_s"),
        ("model_groups: {}\n", "model_groups", "at least 1"),
    ],
)
def test_bad_file_names_file_field_and_reason(tmp_path, text, path_fragment, reason_fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert path_fragment in message
    assert reason_fragment in message


def test_unparseable_and_missing_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_groups: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        parse_config(["a list"])


def test_endpoint_names_unique_across_groups():
    raw = {
        "model_groups": {
            "g1": {"endpoints": [{"name": "x", "base_url": "http://h/v1", "model": "m"}]},
            "g2": {"endpoints": [{"name": "x", "base_url": "http://h/v1", "model": "m"}]},
        }
    }
    with pytest.raises(ConfigError, match="unique"):
        parse_config(raw)


def test_embedded_default_has_three_simulated_endpoints_and_adds_keyed_providers():
    config = embedded_default("http://127.0.0.1:9100", environ={})
    endpoints = config.model_groups[DEFAULT_GROUP].endpoints
    assert [e.name for e in endpoints] == ["sim-fast", "sim-medium", "sim-slow"]
    assert all(e.base_url.startswith("http://127.0.0.1:9100/") for e in endpoints)
    assert list(config.model_groups) == [DEFAULT_GROUP]
    with_key = embedded_default("http://127.0.0.1:9100", environ={"OPENAI_API_KEY": "sk-test"})
    openai = with_key.model_groups["gpt-4o-mini"].endpoints[0]
    assert openai.api_key_env == "OPENAI_API_KEY" and openai.name == "catalog:gpt-4o-mini"
    assert "claude-haiku-4-5" not in with_key.model_groups  # no Anthropic key, no Anthropic models
    assert "sk-test" not in with_key.model_dump_json()  # the key itself never enters config


def test_shipped_example_config_is_valid():
    from pathlib import Path

    config = load_config(Path(__file__).resolve().parents[1] / "config" / "router.example.yaml")
    assert config.model_groups["voice-fast"].endpoints[0].api_key_env == "OPENAI_API_KEY"


def group_raw(**group):
    return {"model_groups": {"g": {"endpoints": [{"name": "a", "base_url": "http://h/v1", "model": "m"}], **group}}}


def test_routing_defaults_suit_voice():
    group = parse_config(group_raw()).model_groups["g"]
    assert group.strategy == "latency-based"
    assert (group.latency.decay_s, group.latency.explore_share, group.latency.in_flight_penalty) == (5.0, 0.05, 0.1)
    assert group.latency.failure_penalty_s is None
    breaker = group.breaker
    assert (breaker.consecutive_failures, breaker.error_rate, breaker.window_s, breaker.min_requests) == (3, 0.5, 30.0, 10)
    assert (breaker.cooldown_s, breaker.max_cooldown_s) == (5.0, 60.0)
    assert group.health_check.enabled is False and group.health_check.interval_s == 10.0
    for strategy in ("latency-based", "least-busy", "weighted-shuffle", "ordered"):
        assert parse_config(group_raw(strategy=strategy)).model_groups["g"].strategy == strategy


@pytest.mark.parametrize(
    ("group", "path_fragment", "reason_fragment"),
    [
        ({"strategy": "fastest"}, "model_groups.g.strategy", "latency-based"),
        ({"strategy": "least-busy", "latency": {"decay_s": 2}}, "model_groups.g", "only applies to strategy latency-based"),
        ({"latency": {"explore_share": 0.9}}, "model_groups.g.latency.explore_share", "less than or equal"),
        ({"latency": {"decay_s": 0}}, "model_groups.g.latency.decay_s", "greater than 0"),
        ({"breaker": {"cooldown_s": 30, "max_cooldown_s": 10}}, "model_groups.g.breaker", "max_cooldown_s"),
        ({"breaker": {"error_rate": 0}}, "model_groups.g.breaker.error_rate", "greater than 0"),
        ({"breaker": {"consecutive_failures": 0}}, "model_groups.g.breaker.consecutive_failures", "greater than or equal"),
        ({"breaker": {"consecutive": 3}}, "model_groups.g.breaker.consecutive", "Extra inputs"),
        ({"health_check": {"interval_s": 1, "timeout_s": 5}}, "model_groups.g.health_check", "timeout_s"),
    ],
)
def test_bad_routing_settings_are_rejected_with_their_path(group, path_fragment, reason_fragment):
    with pytest.raises(ConfigError) as info:
        parse_config(group_raw(**group))
    assert path_fragment in str(info.value) and reason_fragment in str(info.value)


def test_latency_block_with_the_default_strategy_is_accepted():
    group = parse_config(group_raw(latency={"explore_share": 0, "failure_penalty_s": 2})).model_groups["g"]
    assert group.latency.explore_share == 0 and group.latency.failure_penalty_s == 2


def test_embedded_default_runs_with_the_documented_local_key():
    from router.keys import LOCAL_KEY, KeyRing

    ring = KeyRing(embedded_default("http://127.0.0.1:9100", environ={}).auth)
    assert ring.authenticate(f"Bearer {LOCAL_KEY}").key_id
