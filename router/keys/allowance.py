"""``AllowanceCache``: an ingress replica's copy of its keys' allowances,
so admitting a turn of a metered key costs no actor round trip.

    decision = cache.decide(key_id)   # ADMIT, REFUSE, or ASK the keystore
    cache.update(allowance)           # every reply: charge, ask, top-up
    cache.charging(key_id, usd) ... cache.answered(key_id, usd)   # a charge on its way
    cache.admits(key_id)              # the copy, less what is on its way, has room

A key the replica has never seen is ASKed about once; after that each of
its turns' charge replies keeps the copy current. A copy that says the key
may go on admits the turn with no call. A copy that says it may not is
trusted for ``refusal_ttl_s`` (default 1 s, so a client hammering an
exhausted key costs the keystore one call a second per replica) and never
past the end of its budget period; after that the keystore is asked again,
which is how a top-up or a new period lets the key back in.

Why this bounds overspending: a replica's copy is refreshed by the reply to
each charge it makes, and the ingress waits for a key's pending charge
before admitting the key's next turn. So once the ledger has crossed zero,
each replica admits at most one more turn per turn it had running (its copy
may predate the crossing; that turn's charge reply tells it). The property
test (tests/test_spend.py) checks this over random interleavings.

A reply can be slow (a loaded keystore), and the wait for it is bounded;
so the replica also keeps what it has charged and not yet heard back about
(``charging`` / ``answered``), and a copy admits a turn only if it still has
room once those are taken off. A lone replica then never overspends by more
than one turn however late the replies come; with several, each still
counts its own charges. (A copy that already includes a charge on its way
is taken to have room for it twice: a refusal near zero, asked about again
a second later.)

Only newer allowances replace older ones (``Allowance.version``). Pure; the
wall clock is injected.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from router.keys.ledger import Allowance

__all__ = ["AllowanceCache", "Decision", "REFUSAL_TTL_S"]

REFUSAL_TTL_S = 1.0


class Decision(enum.Enum):
    ADMIT = "admit"
    REFUSE = "refuse"
    ASK = "ask"


@dataclass(frozen=True, slots=True)
class _Copy:
    allowance: Allowance
    fetched_s: float


class AllowanceCache:
    def __init__(self, clock: Callable[[], float] = time.time, refusal_ttl_s: float = REFUSAL_TTL_S):
        self._clock = clock
        self._refusal_ttl_s = refusal_ttl_s
        self._copies: dict[str, _Copy] = {}
        self._owed: dict[str, float] = {}  # key id -> charges sent from here, not answered yet (USD)

    def decide(self, key_id: str) -> Decision:
        copy = self._copies.get(key_id)
        if copy is None:
            return Decision.ASK
        if self.admits(key_id):
            return Decision.ADMIT
        now = self._clock()
        if now - copy.fetched_s < self._refusal_ttl_s and now < copy.allowance.period_end_s:
            return Decision.REFUSE
        return Decision.ASK

    def admits(self, key_id: str) -> bool:
        """Whether the copy, less this replica's charges on their way, leaves
        every limit of the key above zero (False: no copy)."""
        copy = self._copies.get(key_id)
        if copy is None:
            return False
        owed = self._owed.get(key_id, 0.0)
        allowance = copy.allowance
        return all(left is None or left - owed > 0 for left in (allowance.credit_remaining_usd, allowance.budget_remaining_usd))

    def update(self, allowance: Allowance) -> None:
        """Keep ``allowance`` unless a newer one is already held. An answer to
        an ASK (same version) refreshes the copy's age."""
        held = self._copies.get(allowance.key_id)
        if held is None or allowance.version >= held.allowance.version:
            self._copies[allowance.key_id] = _Copy(allowance, self._clock())

    def charging(self, key_id: str, usd: float) -> None:
        """A charge of ``usd`` is on its way to the keystore (or owed: sent soon)."""
        self._owed[key_id] = self._owed.get(key_id, 0.0) + usd

    def answered(self, key_id: str, usd: float, allowance: Allowance | None = None) -> None:
        """The charge of ``usd`` was answered with ``allowance`` (None: lost)."""
        left = self._owed.get(key_id, 0.0) - usd
        if left > 1e-12:
            self._owed[key_id] = left
        else:
            self._owed.pop(key_id, None)
        if allowance is not None:
            self.update(allowance)

    def owed(self, key_id: str) -> float:
        return self._owed.get(key_id, 0.0)

    def get(self, key_id: str) -> Allowance | None:
        copy = self._copies.get(key_id)
        return None if copy is None else copy.allowance
