"""The named profiles one simulator hosts, with their counters.

Pure state, no I/O: the server asks `take()` for the behaviour of each
incoming request and reports when the request is done with `finish()`.
Everything runs on one event loop, so no locking is needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .behavior import Behavior, merge_behavior
from .prefix_cache import PrefixCache

__all__ = ["DEFAULT_PROFILE", "ProfileRegistry", "ProfileStats", "UnknownProfile"]

DEFAULT_PROFILE = "default"
"""The profile served at `/v1/...`; it always exists."""


class UnknownProfile(KeyError):
    """A request named a profile the registry does not hold."""


@dataclass
class ProfileStats:
    """Counters of one profile since start or the last reset.

    Attributes:
        requests: Chat completion requests received.
        in_flight: Requests received whose response has not finished yet.
    """

    requests: int = 0
    in_flight: int = 0


class ProfileRegistry:
    """Behaviours and stats of every profile, resettable to the start-up set.

    `failure_count` is consumed here: each `take()` of a profile whose
    failure is counted uses up one, and the profile reverts to
    `failure="none"` once the count reaches zero.
    """

    def __init__(self, initial: Mapping[str, Behavior] | None = None) -> None:
        self._initial: dict[str, Behavior] = {DEFAULT_PROFILE: Behavior()}
        self._initial.update(initial or {})
        self._behaviors: dict[str, Behavior] = {}
        self._stats: dict[str, ProfileStats] = {}
        self._caches: dict[str, PrefixCache] = {}
        self.reset()

    def reset(self) -> None:
        """Restore the start-up behaviours and zero every counter."""
        self._behaviors = dict(self._initial)
        self._stats = {name: ProfileStats() for name in self._behaviors}
        self._caches = {}

    def prefix_cache(self, name: str) -> PrefixCache:
        """The profile's prompt-prefix cache (emptied by `reset`)."""
        return self._caches.setdefault(name, PrefixCache())

    def names(self) -> list[str]:
        return list(self._behaviors)

    def __contains__(self, name: object) -> bool:
        return name in self._behaviors

    def peek(self, name: str) -> Behavior:
        """The profile's current behaviour, without consuming `failure_count`."""
        try:
            return self._behaviors[name]
        except KeyError:
            raise UnknownProfile(name) from None

    def take(self, name: str) -> Behavior:
        """The behaviour for one request, consuming one counted failure."""
        behavior = self.peek(name)
        if behavior.failure == "none" or behavior.failure_count is None:
            return behavior
        if behavior.failure_count == 0:
            # A count of zero set by the admin means "no failures left".
            self._behaviors[name] = _healed(behavior)
            return self._behaviors[name]
        remaining = behavior.failure_count - 1
        self._behaviors[name] = (
            _healed(behavior)
            if remaining == 0
            else behavior.model_copy(update={"failure_count": remaining})
        )
        return behavior

    def update(self, name: str, patch: Mapping[str, Any]) -> Behavior:
        """Merge `patch` into the profile, creating it from defaults if missing.

        Raises:
            pydantic.ValidationError: on an unknown field or invalid value;
                the profile is left unchanged.
        """
        merged = merge_behavior(self._behaviors.get(name, Behavior()), patch)
        self._behaviors[name] = merged
        self._stats.setdefault(name, ProfileStats())
        return merged

    def start(self, name: str) -> None:
        """Count a chat completion request arriving for a known profile."""
        stats = self._stats[name]
        stats.requests += 1
        stats.in_flight += 1

    def in_flight(self, name: str) -> int:
        """Requests of the profile counted by `start` and not yet finished."""
        stats = self._stats.get(name)
        return stats.in_flight if stats is not None else 0

    def finish(self, name: str) -> None:
        """Count a response finished, however it ended."""
        stats = self._stats.get(name)
        # After a reset the request may belong to zeroed counters.
        if stats is not None and stats.in_flight > 0:
            stats.in_flight -= 1

    def behaviors_dump(self) -> dict[str, dict[str, Any]]:
        return {name: b.model_dump() for name, b in self._behaviors.items()}

    def stats_dump(self) -> dict[str, dict[str, int]]:
        return {
            name: {"requests": s.requests, "in_flight": s.in_flight}
            for name, s in self._stats.items()
        }


def _healed(behavior: Behavior) -> Behavior:
    return behavior.model_copy(update={"failure": "none", "failure_count": None})
