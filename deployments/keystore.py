"""The ``KeyStore``: one named, detached Ray actor that holds the API keys'
rate-limit counters, so a key's turns-per-minute limit holds across every
ingress replica.

A thin shell over ``router.keys.SlidingWindowLimiter``. One ``admit`` call
per turn of a rate-limited key; keys without a limit never call it. Its
methods are synchronous, so the actor runs them one at a time: the count is
exact. A restarted actor starts with empty windows.
"""

from __future__ import annotations

import ray

from router.config import RouterConfig
from router.keys import SlidingWindowLimiter
from deployments.named_actor import named_actor

__all__ = ["KeyStore", "KEYSTORE_NAME", "get_or_create_keystore"]

KEYSTORE_NAME = "nemo-keystore"


class KeyStore:
    def __init__(self) -> None:
        self._limiter = SlidingWindowLimiter()

    def admit(self, key_id: str, limit_per_min: int) -> tuple[bool, float]:
        """``(ok, retry_after_s)``; an admitted turn counts against the window."""
        ok, retry_after_s = self._limiter.admit(key_id, limit_per_min)
        return ok, retry_after_s

    def in_window(self, key_id: str) -> int:
        return self._limiter.in_window(key_id)

    def ping(self) -> bool:
        return True


def get_or_create_keystore(config: RouterConfig) -> "ray.actor.ActorHandle":
    """The keystore for this cluster: created once, found by name afterwards."""
    return named_actor(KeyStore, KEYSTORE_NAME, config.deployments.tracker_namespace)
