"""The embedded default: the configuration ``make run`` serves with no file.

Three simulated endpoints with different latency profiles behind one model
group, ``voice-fast``, and a local Parquet turn log. A provider key found
in the given environment adds the catalog's models of that provider, each
as a model group of its own name (``router/catalog/models.yaml``).
The environment is passed in: this module never reads it itself.
"""

from __future__ import annotations

from collections.abc import Mapping

from router.config import RouterConfig, parse_config
from router.keys import local_auth_config

__all__ = ["SIMULATED_PROFILES", "DEFAULT_GROUP", "embedded_default"]

DEFAULT_GROUP = "voice-fast"

# Profile name -> simulator behaviour (see simprovider.Behavior).
SIMULATED_PROFILES: dict[str, dict] = {
    "fast": {"ttft_ms": 40, "token_interval_ms": 5, "tokens": 20},
    "medium": {"ttft_ms": 120, "token_interval_ms": 8, "tokens": 20},
    "slow": {"ttft_ms": 250, "token_interval_ms": 12, "tokens": 20},
}


def embedded_default(
    simulator_url: str,
    environ: Mapping[str, str],
    *,
    turn_log_path: str = "./turnlog-data",
    port: int = 8000,
) -> RouterConfig:
    endpoints = [
        {
            "name": f"sim-{profile}",
            "provider": "openai",
            "base_url": f"{simulator_url}/{profile}/v1",
            "model": "sim-model",
            "tags": ["simulated", "function-calling"],
        }
        for profile in SIMULATED_PROFILES
    ]
    groups: dict[str, dict] = {DEFAULT_GROUP: {"endpoints": endpoints}}
    raw = {
        # The documented local keys (LOCAL_KEY for turns, LOCAL_ADMIN_KEY for
        # admin routes): fine on a laptop, never in production.
        "auth": local_auth_config().model_dump(),
        "server": {"port": port},
        "model_groups": groups,
        "turn_log": {"sink": "local", "path": turn_log_path, "flush_interval_s": 2.0},
    }
    return parse_config(raw, source="<embedded default>", environ=environ)
