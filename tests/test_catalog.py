"""The model catalog: the shipped data validates, and groups follow the
environment passed in. Pure."""

from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

from router.catalog import (
    ENDPOINT_PREFIX,
    Catalog,
    catalog_groups,
    endpoint_prices,
    load_catalog,
    model_card,
    with_catalog_groups,
)
from router.config import EndpointConfig, parse_config
from router.errors import ConfigError

CATALOG = load_catalog()
BASE_CONFIG = {
    "model_groups": {
        "voice-fast": {"endpoints": [{"name": "sim", "base_url": "http://127.0.0.1:9/v1", "model": "sim-model"}]}
    }
}


def test_the_shipped_catalog_is_big_and_broad_enough():
    hosts = {m.host for m in CATALOG.models.values()}
    assert len(CATALOG.models) >= 20
    assert {"openai", "anthropic", "google", "groq", "together", "fireworks", "self-hosted"} <= hosts
    assert {m.provider for m in CATALOG.models.values()} == {"openai", "anthropic", "gemini"}


def test_the_catalog_names_its_source_and_date_and_warns_about_prices():
    assert CATALOG.as_of == date(2026, 11, 24)
    assert "pricing" in CATALOG.source
    assert "check" in CATALOG.notice
    header = (Path(__file__).resolve().parents[1] / "router/catalog/models.yaml").read_text().split("models:")[0]
    assert "2026-11-24" in header and "CHECK" in header


def test_the_self_hosted_entry_is_free_and_configured_by_url():
    vllm = CATALOG.get("vllm/llama-3.1-8b-instruct")
    assert vllm.price.input_per_mtok == vllm.price.output_per_mtok == 0
    assert vllm.base_url is None and vllm.base_url_env == "VLLM_BASE_URL"


def test_get_returns_none_for_an_unknown_name():
    assert CATALOG.get("gpt-4o").model == "gpt-4o"
    assert CATALOG.get("no-such-model") is None
    assert "gpt-4o" in CATALOG and "nope" not in CATALOG


def test_the_catalog_is_frozen():
    with pytest.raises(ValidationError):
        CATALOG.get("gpt-4o").context_window = 1


def _entry(**changes):
    entry = {
        "host": "openai", "provider": "openai", "model": "m", "base_url": "https://x/v1",
        "api_key_env": "K", "context_window": 10, "price": {"input_per_mtok": 1, "output_per_mtok": 2},
    }
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


def _catalog(**models):
    return {"source": "s", "as_of": "2026-11-24", "notice": "check", "models": models}


@pytest.mark.parametrize(
    "models, path",
    [
        ({"m": _entry(colour="blue")}, "models.m.colour"),
        ({"m": _entry(price={"input_per_mtok": 1, "output_per_mtok": 2, "cached": 0})}, "models.m.price.cached"),
        ({"m": _entry(base_url_env="URL")}, "models.m"),
        ({"m": _entry(api_key_env=None)}, "models.m"),
        ({"m": _entry(price={"input_per_mtok": -1, "output_per_mtok": 2})}, "models.m.price.input_per_mtok"),
        ({"m": _entry(tags=["Vision"])}, "models.m.tags.0"),
        ({"Bad Name": _entry()}, "models.Bad Name.[key]"),
    ],
)
def test_a_bad_catalog_fails_with_the_field_path(tmp_path, models, path):
    import yaml

    file = tmp_path / "catalog.yaml"
    file.write_text(yaml.safe_dump(_catalog(**models)))
    with pytest.raises(ConfigError) as caught:
        load_catalog(file)
    assert any(issue.path == path for issue in caught.value.issues), caught.value.issues


def test_unknown_top_level_keys_are_rejected():
    with pytest.raises(ValidationError):
        Catalog.model_validate({**_catalog(m=_entry()), "extra": 1})


def test_no_keys_in_the_environment_means_no_groups(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-process")  # never read: the mapping is what counts
    assert catalog_groups(CATALOG, {}) == {}
    assert catalog_groups(CATALOG, {"OPENAI_API_KEY": ""}) == {}


def test_a_key_switches_on_every_model_of_its_host_and_only_those():
    groups = catalog_groups(CATALOG, {"GROQ_API_KEY": "gsk-x"})
    assert set(groups) == {n for n, m in CATALOG.models.items() if m.host == "groq"}
    (endpoint,) = groups["groq/llama-3.1-8b-instant"]["endpoints"]
    assert endpoint == {
        "name": "catalog:groq/llama-3.1-8b-instant",
        "provider": "openai",
        "base_url": "https://api.groq.com/openai/v1",
        "model": "llama-3.1-8b-instant",
        "tags": ["function-calling", "json-mode"],
        "api_key_env": "GROQ_API_KEY",
    }
    assert "gsk-x" not in repr(groups)


def test_the_vllm_group_takes_its_url_from_the_environment():
    groups = catalog_groups(CATALOG, {"VLLM_BASE_URL": "http://vllm:8000/v1"})
    (endpoint,) = groups["vllm/llama-3.1-8b-instruct"]["endpoints"]
    assert endpoint["base_url"] == "http://vllm:8000/v1"
    assert endpoint["api_key_env"] == "VLLM_API_KEY"  # used only if set


def test_catalog_groups_validate_as_router_config():
    environ = {k: "x" for k in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GROQ_API_KEY",
                                "TOGETHER_API_KEY", "FIREWORKS_API_KEY")} | {"VLLM_BASE_URL": "http://vllm:8000/v1"}
    config = parse_config(with_catalog_groups(BASE_CONFIG, CATALOG, environ))
    assert set(config.model_groups) == {"voice-fast", *CATALOG.models}
    assert list(config.model_groups)[0] == "voice-fast"


def test_a_config_group_of_the_same_name_wins():
    raw = {"model_groups": {"gpt-4o": {"endpoints": [{"name": "mine", "base_url": "https://proxy/v1", "model": "gpt-4o"}]}}}
    merged = with_catalog_groups(raw, CATALOG, {"OPENAI_API_KEY": "x"})
    assert merged["model_groups"]["gpt-4o"] == raw["model_groups"]["gpt-4o"]
    assert "gpt-4o-mini" in merged["model_groups"]
    assert raw["model_groups"].keys() == {"gpt-4o"}  # the input is not changed


def test_a_catalog_group_whose_endpoint_name_is_taken_is_left_out():
    raw = {"model_groups": {"mine": {"endpoints": [{"name": "catalog:gpt-4o", "base_url": "https://p/v1", "model": "m"}]}}}
    merged = with_catalog_groups(raw, CATALOG, {"OPENAI_API_KEY": "x"})
    assert "gpt-4o" not in merged["model_groups"]
    parse_config(merged)


def test_a_model_card_is_openai_shaped_and_carries_no_secret_or_url():
    card = model_card("vllm/llama-3.1-8b-instruct", CATALOG.get("vllm/llama-3.1-8b-instruct"))
    assert card["id"] == "vllm/llama-3.1-8b-instruct" and card["object"] == "model"
    assert card["nemo"]["context_window"] == 131072
    assert "VLLM" not in repr(card) and "http" not in repr(card)
    assert model_card("voice-fast", None) == {"id": "voice-fast", "object": "model", "created": 0, "owned_by": "nemo-router"}


def test_endpoint_prices_by_catalog_name_or_upstream_model():
    endpoints = [
        EndpointConfig(name=ENDPOINT_PREFIX + "claude-haiku-4-5", provider="anthropic", base_url="https://api.anthropic.com", model="claude-haiku-4-5"),
        EndpointConfig(name="my-mini", base_url="https://api.openai.com/v1", model="gpt-4o-mini"),
        EndpointConfig(name="sim", base_url="http://127.0.0.1:9/v1", model="sim-model"),
    ]
    prices = endpoint_prices(CATALOG, endpoints)
    assert prices.keys() == {"catalog:claude-haiku-4-5", "my-mini"}
    assert prices["my-mini"].input_per_mtok == 0.15
