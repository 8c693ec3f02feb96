"""``SpendLedger``: what each key has spent, and what it may still spend.

The keystore actor (``deployments.keystore``) holds the one ledger of a
router; every ingress replica charges it with each finished turn's
``cost_usd``. Per metered key (``ApiKeyConfig.metered``):

- **credit**: ``credit_usd`` from config plus admin top-ups, minus every
  charge ever made (never reset). Remaining credit may go below zero: a turn
  that started with credit left is charged in full when it ends.
- **budget**: ``budget_usd`` per ``period`` (``router.keys.periods``), minus
  the charges of turns that *started* in the current period (the period of a
  turn is that of its turn-log ``timestamp``, so a ledger rebuilt from the
  turn log agrees with the live one).

A key may go on while every limit it has is above zero (``Allowance.ok``).

Each change (charge, top-up) gives the key a new ``Allowance`` with a larger
``version`` (the ledger's start time, then a counter): ingress replicas cache
the newest they have seen (``router.keys.allowance``), so replies that
arrive out of order never roll a cache back. A ledger rebuilt after a restart
(``recover``) starts from the turn log's charges and the top-up ledger's
entries; a live charge of a turn the turn log already held at recovery
(``turn_ref``: request id and start time in microseconds) is not counted twice.

Pure: the wall clock (Unix seconds) is injected; tests move it by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone

from router.keys.config import ApiKeyConfig
from router.keys.periods import Period, period_bounds

__all__ = ["Allowance", "SpendLedger", "Charge", "TurnRef", "turn_ref"]

TurnRef = tuple[str, int]
"""A turn's identity in the turn log: ``(request_id, timestamp in µs)``."""

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def turn_ref(request_id: str, received_at_s: float) -> TurnRef:
    """A turn's ref as its turn-log row gives it (the timestamp column holds µs)."""
    moment = datetime.fromtimestamp(received_at_s, tz=timezone.utc)
    return request_id, (moment - _EPOCH) // timedelta(microseconds=1)


RECOVERY_OVERLAP_S = 600.0
"""Turns that started this long before a recovery may still be charged live
(their record reached the turn log before the charge reached the ledger):
their refs are kept, so such a charge is not counted twice."""


@dataclass(frozen=True, slots=True)
class Charge:
    """One turn's cost to a key: ``at_s`` is when the turn started (Unix s)."""

    key_id: str
    usd: float
    at_s: float
    turn_ref: TurnRef | None = None


@dataclass(frozen=True, slots=True)
class Allowance:
    """A metered key's standing. USD throughout; None: the key has no such limit.

    ``credit_usd``: granted in total (config plus top-ups); ``period_*``:
    the budget's period (``month`` for a key with a credit only), as Unix
    seconds ``[start, end)``.
    """

    key_id: str
    version: tuple[float, int]
    credit_usd: float | None
    credit_remaining_usd: float | None
    budget_usd: float | None
    budget_remaining_usd: float | None
    period: Period
    period_spend_usd: float
    period_start_s: float
    period_end_s: float

    @property
    def ok(self) -> bool:
        """May a turn start: every limit the key has is above zero."""
        return all(left is None or left > 0 for left in (self.credit_remaining_usd, self.budget_remaining_usd))

    def as_json(self) -> dict:
        """For ``GET /v1/me``: the figures, with the period's bounds in ISO 8601."""
        data = asdict(self)
        for name in ("version", "period_start_s", "period_end_s", "key_id"):
            data.pop(name)
        data["period_start"] = _iso(self.period_start_s)
        data["period_end"] = _iso(self.period_end_s)
        return data


@dataclass(slots=True)
class _Account:
    limits: ApiKeyConfig
    spent_usd: float = 0.0  # every charge ever (draws the credit)
    top_ups_usd: float = 0.0
    period_start_s: float = float("-inf")  # of ``period_spend_usd``
    period_spend_usd: float = 0.0
    seq: int = 0


class SpendLedger:
    def __init__(self, keys: Iterable[ApiKeyConfig] = (), clock: Callable[[], float] = time.time):
        self._clock = clock
        self._epoch = clock()
        self._accounts: dict[str, _Account] = {}
        self._recovered: set[TurnRef] = set()
        self.configure(keys)

    def configure(self, keys: Iterable[ApiKeyConfig]) -> None:
        """Take (new) limits; spend so far is kept. Keys no longer metered are dropped."""
        metered = {k.name: k for k in keys if k.metered}
        self._accounts = {
            name: self._accounts[name] if name in self._accounts else _Account(limits)
            for name, limits in metered.items()
        }
        for name, limits in metered.items():
            self._accounts[name].limits = limits

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._accounts)

    def allowance(self, key_id: str) -> Allowance | None:
        """The key's standing now; None for a key that is not metered."""
        account = self._accounts.get(key_id)
        return None if account is None else self._standing(key_id, account)

    def charge(self, charge: Charge) -> Allowance | None:
        """Charge one turn. None for a key that is not metered (nothing to do)."""
        account = self._accounts.get(charge.key_id)
        if account is None:
            return None
        if charge.turn_ref is not None and charge.turn_ref in self._recovered:
            self._recovered.discard(charge.turn_ref)  # already counted from the turn log
            return self._standing(charge.key_id, account)
        self._add(account, charge.usd, charge.at_s)
        account.seq += 1
        return self._standing(charge.key_id, account)

    def top_up(self, key_id: str, usd: float) -> Allowance | None:
        """Add ``usd`` to the key's credit. None for a key with no credit."""
        account = self._accounts.get(key_id)
        if account is None or account.limits.credit_usd is None:
            return None
        account.top_ups_usd += usd
        account.seq += 1
        return self._standing(key_id, account)

    def recover(self, charges: Iterable[Charge], top_ups: Iterable[tuple[str, float]] = ()) -> None:
        """Rebuild from the turn log's charges and the ledger's top-ups (at start)."""
        recent_s = self._clock() - RECOVERY_OVERLAP_S
        for charge in charges:
            account = self._accounts.get(charge.key_id)
            if account is not None:
                self._add(account, charge.usd, charge.at_s)
                if charge.turn_ref is not None and charge.at_s >= recent_s:
                    self._recovered.add(charge.turn_ref)
        for key_id, usd in top_ups:
            account = self._accounts.get(key_id)
            if account is not None:
                account.top_ups_usd += usd

    def _add(self, account: _Account, usd: float, at_s: float) -> None:
        account.spent_usd += usd
        start_s, _ = period_bounds(account.limits.budget_period, self._clock())
        self._roll(account, start_s)
        if at_s >= start_s:
            account.period_spend_usd += usd

    def _roll(self, account: _Account, start_s: float) -> None:
        if account.period_start_s != start_s:
            # A new period; a recovery also lands here first (from -inf),
            # with period spend still zero.
            account.period_start_s, account.period_spend_usd = start_s, 0.0

    def _standing(self, key_id: str, account: _Account) -> Allowance:
        limits = account.limits
        start_s, end_s = period_bounds(limits.budget_period, self._clock())
        self._roll(account, start_s)
        credit = None if limits.credit_usd is None else limits.credit_usd + account.top_ups_usd
        return Allowance(
            key_id=key_id,
            version=(self._epoch, account.seq),
            credit_usd=credit,
            credit_remaining_usd=None if credit is None else credit - account.spent_usd,
            budget_usd=limits.budget_usd,
            budget_remaining_usd=None if limits.budget_usd is None else limits.budget_usd - account.period_spend_usd,
            period=limits.budget_period,
            period_spend_usd=account.period_spend_usd,
            period_start_s=start_s,
            period_end_s=end_s,
        )


def _iso(at_s: float) -> str:
    return datetime.fromtimestamp(at_s, tz=timezone.utc).isoformat().replace("+00:00", "Z")
