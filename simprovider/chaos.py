"""A chaos monkey for the simulated provider: while a load runs, it flips
some profiles between random failure modes and health, each after a random
short while, so every request meets whatever its endpoint is doing at that
instant (``tests/test_e2e_chaos.py``, ``benchmarks/chaos.py``).

The faults are the simulator's own: 5xx, 429, a hang before any header, a
connection dropped mid-stream, a stream that stalls, a malformed event. The
monkey runs in a thread of its own, stops by itself when its ``with`` block
ends, and leaves every profile healthy.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["FAULTS", "ChaosMonkey"]

FAULTS: tuple[dict[str, Any], ...] = (
    {"failure": "http_500"},
    {"failure": "http_503"},
    {"failure": "http_429"},
    {"failure": "hang"},
    {"failure": "drop_after"},
    {"failure": "stall_after"},
    {"failure": "malformed"},
)


class ChaosMonkey:
    """Flips ``profiles`` of ``simulator`` every ``interval_s`` (a random
    range, seconds): a fault from ``FAULTS`` with probability
    ``fault_share`` (mid-stream faults after 1 to ``max_good_tokens`` good
    tokens), health otherwise. ``healthy`` is each profile's healthy
    behaviour, restored at the end. ``flips`` counts the faults applied."""

    def __init__(
        self,
        simulator,
        profiles: Iterable[str],
        healthy: Mapping[str, Any],
        *,
        seed: int = 0,
        fault_share: float = 0.5,
        interval_s: tuple[float, float] = (0.05, 0.25),
        max_good_tokens: int = 8,
    ):
        self._simulator = simulator
        self._profiles = list(profiles)
        self._healthy = {"failure": "none", **healthy}
        self._rng = random.Random(seed)
        self._fault_share = fault_share
        self._interval_s = interval_s
        self._max_good_tokens = max_good_tokens
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-monkey", daemon=True)
        self.flips: Counter[str] = Counter()

    def __enter__(self) -> "ChaosMonkey":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for profile in self._profiles:
            self._simulator.set_behavior(profile, **self._healthy)

    def _run(self) -> None:
        while not self._stop.wait(self._rng.uniform(*self._interval_s)):
            for profile in self._profiles:
                fields = dict(self._healthy)
                if self._rng.random() < self._fault_share:
                    fault = self._rng.choice(FAULTS)
                    fields |= fault | {"drop_after_tokens": self._rng.randint(1, self._max_good_tokens)}
                    self.flips[fault["failure"]] += 1
                self._simulator.set_behavior(profile, **fields)
