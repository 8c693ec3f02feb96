"""What a redeploy with a changed config carries over, and what each
cluster-wide actor of a router is called.

A router's cluster-wide actors (``deployments``) are found by name, so a
redeploy (``serve deploy`` or ``serve run`` again) finds the ones the last
deploy made. Each is reconfigured in place with the new config
(``reconfigure``), carrying over the state that still applies:

- the tracker (``RoutingState.reconfigured``): for every endpoint that
  still exists at the same upstream (``carried_endpoints``: same name,
  provider, base URL and model), its turns in flight, latency estimates,
  breaker, recent TTFTs and counters, under the new group's settings;
  conversations' turn counts; pins to endpoints that still exist. An
  endpoint that is new, or whose upstream changed, starts fresh; one that
  is gone is forgotten with its turns in flight (their late reports are
  ignored);
- the keystore: every key's spend (keys come and go by name);
- the metrics hub: its merged metrics when ``window_s``/``slot_s`` are
  unchanged, and the state of alert rules that are unchanged;
- the response cache: its entries when the ``cache`` block is unchanged.

The health prober has no state: a changed set of checks replaces it.

``ActorNames``: every actor but the keystore is named after the router's
``deployments.tracker_name``, so two routers on one cluster never share
(and never reconfigure) each other's actors unless they name the same
tracker.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from router.config import EndpointConfig, RouterConfig

__all__ = ["ActorNames", "carried_endpoints", "config_digest", "probe_targets", "same_upstream"]


def same_upstream(old: EndpointConfig, new: EndpointConfig) -> bool:
    """Whether ``new`` calls where ``old`` did (its signal still applies):
    same provider, base URL and model. Weight, tags and keys may change."""
    return (old.provider, old.base_url.rstrip("/"), old.model) == (new.provider, new.base_url.rstrip("/"), new.model)


def carried_endpoints(old: RouterConfig, new: RouterConfig) -> frozenset[str]:
    """The endpoints whose routing state a redeploy from ``old`` to ``new``
    carries over: in both configs (in any group), at the same upstream."""
    before = _endpoints(old)
    return frozenset(name for name, endpoint in _endpoints(new).items() if name in before and same_upstream(before[name], endpoint))


def _endpoints(config: RouterConfig) -> dict[str, EndpointConfig]:
    return {e.name: e for group in config.model_groups.values() for e in group.endpoints}


def probe_targets(config: RouterConfig) -> tuple:
    """What the health prober runs on: each checked endpoint with its
    group's check (equal targets: the running prober still fits)."""
    return tuple(
        (endpoint, group.health_check)
        for group in config.model_groups.values()
        if group.health_check.enabled
        for endpoint in group.endpoints
    )


def config_digest(*parts) -> str:
    """A short, stable digest of config values (pydantic models, tuples,
    plain values): names an actor built from exactly these."""
    def plain(value):
        if hasattr(value, "model_dump"):
            return value.model_dump(mode="json")
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return value

    text = json.dumps([plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class ActorNames:
    """The names of one router's cluster-wide actors (in
    ``deployments.tracker_namespace``)."""

    tracker: str
    keystore: str
    metrics_hub: str
    cache: str
    prober_prefix: str  # + the digest of the prober's targets

    @classmethod
    def of(cls, config: RouterConfig) -> "ActorNames":
        deployments = config.deployments
        tracker = deployments.tracker_name
        return cls(
            tracker=tracker,
            keystore=deployments.keystore_name,
            metrics_hub=config.metrics.hub_name or f"{tracker}-metrics",
            cache=f"{tracker}-cache",
            prober_prefix=f"{tracker}-health",
        )

    def tracker_shard(self, shard: int) -> str:
        """Shard 0 is the tracker itself (a one-shard router's name stays)."""
        return self.tracker if shard == 0 else f"{self.tracker}-shard-{shard}"

    def prober(self, config: RouterConfig) -> str:
        # The shard count too: the prober reports each check to its endpoint's shard.
        return f"{self.prober_prefix}-{config_digest(probe_targets(config), config.deployments.tracker_shards)}"
