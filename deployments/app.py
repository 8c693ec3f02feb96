"""The application builder: what ``serve run`` / ``serve deploy`` import.

    serve run deployments.app:app config_path=config/router.example.yaml

``app`` is a Ray Serve application builder: it takes the ``args`` mapping
(``config_path``: a YAML file) and returns the bound application. Without a
config path it reads ``NEMO_ROUTER_CONFIG``; with neither, it refuses
(the keyless embedded default needs the simulator, which ``nemo-router run``
starts: see the README).

Serve rebuilds an application on ``serve deploy`` only when its ``args``
change, not when the file they name does: ``config_sha256`` (the file's
SHA-256, optional) is the arg to change with the file, and the builder
refuses a file that does not match it.

Every build brings the router's cluster-wide actors to this config
(``router.rollout``): each is created, or reconfigured in place carrying its
state over, before Serve starts the new replicas; the actors this config no
longer needs are retired.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from ray.serve import Application

from router.config import RouterConfig, load_config
from router.rollout import ActorNames
from router.scrape_access import networks_need_forwarding
from nemo_turnlog.alerts import AlertRule

from deployments.cache_actor import get_or_create_cache_actor
from deployments.caller import caller_deployment
from deployments.health import start_health_prober
from deployments.keystore import get_or_create_keystore, keystore_needed
from deployments.metrics_hub import get_or_create_metrics_hub
from deployments.ingress import ingress_deployment
from deployments.named_actor import retire
from deployments.tracker import get_or_create_trackers

__all__ = ["app", "build_app", "APP_NAME"]

APP_NAME = "nemo-router"


def build_app(config: RouterConfig) -> Application:
    """Bring the router's actors to ``config`` (create, or reconfigure in
    place; retire those no longer needed) and bind ingress -> caller."""
    config = _absolute_paths(config)
    # Serve reads the same variable, in every Ray process, at start-up.
    refusal = networks_need_forwarding(config.metrics.scrape, os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1")
    if refusal is not None:
        raise ValueError(refusal)
    get_or_create_trackers(config)
    start_health_prober(config)
    if keystore_needed(config):
        get_or_create_keystore(config)
    names, namespace = ActorNames.of(config), config.deployments.tracker_namespace
    if config.metrics.enabled:
        _metrics_hub(config)
    elif config.metrics.hub_name is None:  # a hub named by the config may be another router's too
        retire(names.metrics_hub, namespace)
    if config.cache.enabled:
        get_or_create_cache_actor(config)
    else:
        retire(names.cache, namespace)
    if config.deployments.upstream_calls == "ingress":
        return ingress_deployment(config).bind(config)  # each ingress replica calls upstreams itself
    caller = caller_deployment(config).bind(config)
    return ingress_deployment(config).bind(config, caller)


def app(args: dict[str, Any]) -> Application:
    config_path = args.get("config_path") or os.environ.get("NEMO_ROUTER_CONFIG")
    if not config_path:
        raise ValueError(
            "no router configuration: pass config_path=FILE to `serve run`, set NEMO_ROUTER_CONFIG, "
            "or use `nemo-router run` for the embedded default"
        )
    _check_digest(config_path, args.get("config_sha256"))
    return build_app(load_config(config_path, environ=os.environ))


def _check_digest(config_path: str, expected: str | None) -> None:
    if expected is None:
        return
    digest = hashlib.sha256(Path(config_path).read_bytes()).hexdigest()
    if digest != str(expected).strip().lower():
        raise ValueError(
            f"{config_path} has SHA-256 {digest}, not the config_sha256 in the Serve config: "
            "deploy the file you meant (or update config_sha256)"
        )


def _metrics_hub(config: RouterConfig):
    metrics = config.metrics
    return get_or_create_metrics_hub(
        name=ActorNames.of(config).metrics_hub,
        namespace=config.deployments.tracker_namespace,
        window_s=metrics.window_s,
        slot_s=metrics.slot_s,
        alert_rules=[AlertRule(**rule.model_dump()) for rule in metrics.alerts],
        webhook_url_env=metrics.webhook_url_env,
        evaluate_interval_s=metrics.evaluate_interval_s,
        recent_turns=metrics.dashboard_turns,
        resources=config.deployments.actor_resources,
    )


def _absolute_paths(config: RouterConfig) -> RouterConfig:
    # Replicas run with another working directory: pin relative paths to ours.
    spool = config.turn_log.spool.model_copy(update={"path": str(Path(config.turn_log.spool.path).resolve())})
    turn_log = config.turn_log.model_copy(update={"path": str(Path(config.turn_log.path).resolve()), "spool": spool})
    return config.model_copy(update={"turn_log": turn_log})
