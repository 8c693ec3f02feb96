"""Cache-warm routing that yields to latency: a conversation prefers the
endpoint that served its last turn, unless latency says otherwise.

Providers cache prompt prefixes per deployment (OpenAI and Anthropic prompt
caching, vLLM/SGLang prefix caching), so a call that stays on one endpoint
starts faster and pays less on every later turn. Peers pin a session until
the endpoint fails (LiteLLM's deployment affinity, vLLM production-stack's
session routing), and a pinned endpoint that turns slow keeps the call slow.
Here the pin yields:

- the pinned endpoint goes first only if it may take the turn (eligible,
  breaker closed or probe free) and its expected latency (peak-EWMA TTFT
  plus the lateness of its oldest pending turn, as the strategy sees it)
  exceeds the best candidate's by no more than the margin: the expected
  benefit of a warm cache. Otherwise the strategy's ranking stands, and the
  reason is carried to the turn record (``unhealthy``, ``slower by N ms``).
- the margin is ``affinity.margin_s`` if set, else the pinned endpoint's
  measured cold-minus-warm TTFT (``EndpointState.warm_gain_s``) when it has
  both kinds of samples, else ``affinity.default_margin_s`` (0.1 s).
- a pin is set when a turn is planned (to the plan's first endpoint, where
  the prompt goes first, so even a turn right behind it sees the pin), and
  set again by the turn's successful attempt when its outcome arrives (so
  a turn that failed over, even mid-stream, leaves its conversation pinned
  where it finished: the cache is warm there now). It lives ``ttl_s``
  (default 300 s, the usual provider cache lifetime) after that turn.
- pins are per model group, API key and conversation id; at most
  ``max_pins`` per group (least recently set evicted first).

``Pins`` is the table; ``prefer_pinned`` the decision, a pure function.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Container, Sequence
from dataclasses import dataclass

from router.config_conversations import AffinityConfig
from router.strategies import EndpointLoad
from router.ttl_table import TtlTable

__all__ = ["AffinityChoice", "PinKey", "Pins", "expected_latency_s", "prefer_pinned"]

PinKey = tuple[str | None, str]
"""``(api_key_id, conversation_id)`` within one model group's pins."""


@dataclass(frozen=True, slots=True)
class AffinityChoice:
    """What affinity did for one turn: ``pinned`` (the endpoint before this
    turn; None: no pin), whether the plan starts with it, and why not."""

    pinned: str | None
    followed: bool
    reason: str  # "pinned" | "no pin" | "unhealthy" | "not eligible" | "slower by N ms"

    @property
    def note(self) -> str:
        """The turn record's ``affinity`` value."""
        if self.pinned is None or self.followed:
            return self.reason
        return f"{self.reason}: left {self.pinned}"


NO_PIN = AffinityChoice(None, False, "no pin")


def expected_latency_s(load: EndpointLoad) -> float | None:
    """The endpoint's expected latency now, seconds (None: no data)."""
    if load.latency_s is None:
        return None
    return load.latency_s + load.lateness_s


def prefer_pinned(
    ranked: Sequence[EndpointLoad],
    pinned: str | None,
    *,
    eligible: Collection[str],
    margin_s: float,
) -> tuple[list[EndpointLoad], AffinityChoice]:
    """``ranked`` (the healthy candidates, best first) with the pinned
    endpoint moved to the front when affinity keeps it; the rest keep their
    order. ``eligible``: every endpoint the turn may use, healthy or not
    (a pinned endpoint among them but not in ``ranked`` is unhealthy)."""
    ranked = list(ranked)
    if pinned is None:
        return ranked, NO_PIN
    index = next((i for i, load in enumerate(ranked) if load.name == pinned), None)
    if index is None:
        return ranked, AffinityChoice(pinned, False, "unhealthy" if pinned in eligible else "not eligible")
    pinned_s = expected_latency_s(ranked[index])
    known = [s for s in map(expected_latency_s, ranked) if s is not None]
    if pinned_s is not None and known and pinned_s - min(known) > margin_s:
        return ranked, AffinityChoice(pinned, False, f"slower by {(pinned_s - min(known)) * 1000:.0f} ms")
    ranked.insert(0, ranked.pop(index))
    return ranked, AffinityChoice(pinned, True, "pinned")


class Pins:
    """One model group's pins: ``PinKey`` -> endpoint name, bounded and
    expiring (``router.ttl_table``). The clock is the caller's (seconds)."""

    def __init__(self, config: AffinityConfig, clock: Callable[[], float]):
        self.config = config
        self._table: TtlTable[str] = TtlTable(ttl_s=config.ttl_s, max_entries=config.max_pins)
        self._clock = clock

    def __len__(self) -> int:
        return len(self._table)

    def get(self, key: PinKey) -> str | None:
        return self._table.get(key, self._clock())

    def pin(self, key: PinKey, endpoint: str) -> None:
        self._table.put(key, endpoint, self._clock())

    def carried(self, config: AffinityConfig, endpoints: Container[str]) -> "Pins":
        """Pins under ``config`` (a redeploy) that go on from these, except
        those to an endpoint not in ``endpoints`` (removed, or moved to
        another upstream: its cache is not warm for anyone)."""
        pins = Pins(config, self._clock)
        pins._table = self._table.carried(
            ttl_s=config.ttl_s, max_entries=config.max_pins, now_s=self._clock(), keep=lambda _, endpoint: endpoint in endpoints
        )
        return pins

    def per_endpoint(self) -> dict[str, int]:
        """How many live pins point at each endpoint (O(pins): for reports)."""
        counts: dict[str, int] = {}
        for endpoint in self._table.values(self._clock()):
            counts[endpoint] = counts.get(endpoint, 0) + 1
        return counts

    def margin_s(self, measured_gain_s: float | None) -> float:
        """The break-away margin: configured, else measured, else the default."""
        if self.config.margin_s is not None:
            return self.config.margin_s
        return measured_gain_s if measured_gain_s is not None else self.config.default_margin_s
