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
    assert openai.api_key_env == "OPENAI_API_KEY"
    assert "sk-test" not in with_key.model_dump_json()  # the key itself never enters config


def test_shipped_example_config_is_valid():
    from pathlib import Path

    config = load_config(Path(__file__).resolve().parents[1] / "config" / "router.example.yaml")
    assert config.model_groups["voice-fast"].endpoints[0].api_key_env == "OPENAI_API_KEY"
