"""Peak-EWMA: a latency estimate that jumps up at once and comes down slowly.

From Finagle's ``PeakEwma`` load metric, as ported to tower
(``tower::load::PeakEwma``): a sample higher than the estimate replaces it
immediately (the *peak*), so a slowdown is seen on the first slow sample;
a lower sample only pulls the estimate down with a weight that grows with
elapsed time, ``w = exp(-elapsed_s / decay_s)``, so one lucky fast sample
does not make a struggling endpoint look healthy again.

One deliberate difference: Finagle and tower decay towards *zero* on every
read (they observe a zero sample when asked for the load), which makes an
idle endpoint look ever faster. Here the estimate decays continuously
towards the *latest sample*, so reading is pure (no hidden mutation, the
same answer for the same clock) and an estimate never drops below what was
last measured. Exploration of stale endpoints is the strategy's job
(``router.strategies``), not the estimator's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["PeakEwma", "DEFAULT_DECAY_S"]

DEFAULT_DECAY_S = 10.0
"""Finagle's and tower's default decay period (10 s)."""


class PeakEwma:
    """Peak-EWMA of one latency, in seconds.

    Args:
        decay_s: Time constant of the decay towards a lower sample, in
            seconds (default 10). After ``decay_s`` the estimate has moved
            63% of the way to that sample; after ``3 * decay_s``, 95%.
        clock: Monotonic time source in seconds (default ``time.monotonic``).

    ``value()`` is ``None`` until the first sample: "no data", which the
    caller treats as it sees fit (the latency strategy gives it an
    optimistic prior). ``observe`` ignores negative and non-finite samples.
    """

    __slots__ = ("_decay_s", "_clock", "_start_s", "_target_s", "_at_s", "samples", "last_sample_s")

    def __init__(self, decay_s: float = DEFAULT_DECAY_S, clock: Callable[[], float] = time.monotonic):
        if not decay_s > 0:
            raise ValueError("decay_s must be positive")
        self._decay_s = decay_s
        self._clock = clock
        self._start_s: float | None = None  # estimate when the latest sample arrived
        self._target_s = 0.0  # the latest sample: where the estimate is heading
        self._at_s = 0.0  # clock time of the latest sample
        self.samples = 0
        self.last_sample_s: float | None = None

    def value(self) -> float | None:
        """The current estimate in seconds, or ``None`` with no data yet."""
        if self._start_s is None:
            return None
        if self._start_s <= self._target_s:
            return self._target_s
        elapsed_s = max(0.0, self._clock() - self._at_s)
        w = math.exp(-elapsed_s / self._decay_s)
        return self._start_s * w + self._target_s * (1.0 - w)

    def age_s(self) -> float | None:
        """Seconds since the latest sample, or ``None`` with no data yet."""
        return None if self._start_s is None else max(0.0, self._clock() - self._at_s)

    def observe(self, sample_s: float) -> None:
        """Take one latency sample, in seconds."""
        if not (math.isfinite(sample_s) and sample_s >= 0):
            return
        current = self.value()
        self._start_s = sample_s if current is None or sample_s >= current else current
        self._target_s = sample_s
        self._at_s = self._clock()
        self.samples += 1
        self.last_sample_s = sample_s

    @property
    def decay_s(self) -> float:
        return self._decay_s

    def retune(self, decay_s: float) -> None:
        """Decay by ``decay_s`` from now on, keeping the estimate (a redeploy
        that changed the group's ``latency.decay_s``)."""
        if not decay_s > 0:
            raise ValueError("decay_s must be positive")
        self._decay_s = decay_s

    def __repr__(self) -> str:
        return f"PeakEwma(value={self.value()!r}, samples={self.samples}, decay_s={self._decay_s})"
