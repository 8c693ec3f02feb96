"""``SpendGate``: an ingress replica's side of keys' credits and budgets.

    allowance = await gate.admit(key)              # before the turn; InsufficientQuota (429) if spent
    gate.charge(turn, cost_usd)                    # when the turn has ended; never waits
    ChargedResponse(body, background=gate.charge_after_reply(turn, cost_usd))
    await gate.me(key) / await gate.top_up(name, usd)

Admission reads the replica's ``AllowanceCache`` (``router.keys.allowance``):
no actor call for a key whose copy says it may go on. The keystore actor is
asked only for a key this replica has not seen yet, or one whose copy says
it is spent (at most once a second, and again when its period ends).

Each charge is sent when its turn ends, and its reply lands in the cache in
the background. A key's next turn waits for a charge still on its way
(usually long back by then), which is what bounds overspending to one turn
per turn running. Should the reply be slower than that wait, the copy is
read less the charges this replica has on their way
(``AllowanceCache.admits``). A non-streamed turn's charge goes out once its
reply is sent, but is owed (counted, and waited for) from the moment the
reply is made: the key's next turn can arrive before the reply's
background task runs.

An unreachable keystore admits a key this replica has never seen (a caller
should not hear silence over a ledger); a key seen before is judged on its
last copy. The keystore is looked up again on the next call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError
from starlette.background import BackgroundTask
from starlette.responses import Response

from router.config import RouterConfig
from router.errors import InvalidRequest
from router.keys import Allowance, AllowanceCache, Decision, InsufficientQuota, KeyInfo, RateLimited, turn_ref
from router.turn import TurnRequest

__all__ = ["SpendGate", "ChargedResponse", "KEYSTORE_ERRORS", "KEYSTORE_TIMEOUT_S", "CHARGE_WAIT_S", "credit_header", "me_json", "top_up_amount"]

log = logging.getLogger(__name__)

KEYSTORE_TIMEOUT_S = 1.0
CHARGE_WAIT_S = 0.5  # the most a turn waits for its key's previous charge
# What an unreachable keystore raises: gone or not made yet (ValueError from
# the lookup), slow, or one left by an older router without these methods.
KEYSTORE_ERRORS = (RayError, TimeoutError, ValueError, AttributeError)


class SpendGate:
    """``lookup()`` finds the keystore actor (default: by its configured name);
    tests pass a stand-in whose methods have ``.remote`` returning awaitables."""

    def __init__(self, config: RouterConfig, lookup: Callable[[], Any] | None = None, clock: Callable[[], float] = time.time):
        deployments = config.deployments
        self._lookup = lookup or (lambda: ray.get_actor(deployments.keystore_name, namespace=deployments.tracker_namespace))
        self._cache = AllowanceCache(clock=clock)
        self._pending: dict[str, asyncio.Future] = {}  # key id -> its latest charge on its way
        self._keystore = None
        # Only these keys' turns are charged: a non-streamed turn reports its
        # cost whatever its key (the ``x-nemo-cost-usd`` header).
        self._metered = frozenset(key.name for key in config.auth.keys if key.metered)

    async def admit(self, key: KeyInfo) -> Allowance | None:
        """Let a turn of ``key`` start, or raise ``InsufficientQuota``. The
        allowance the decision was made on (None: not metered, or unknown)."""
        if not key.metered:
            return None
        await self._charges_settled(key.key_id)
        decision = self._cache.decide(key.key_id)
        if decision is Decision.ASK:
            allowance = await self._ask(key.key_id)
            if allowance is None and self._cache.get(key.key_id) is None:
                return None  # keystore unreachable, and the key never seen here: admitted
            # The answer, or (keystore unreachable) the last copy, less what is on its way.
            decision = Decision.ADMIT if self._cache.admits(key.key_id) else Decision.REFUSE
        allowance = self._cache.get(key.key_id)
        if decision is Decision.REFUSE:
            raise InsufficientQuota(key.name, _spent_part(allowance))
        return allowance

    async def within_rate_limit(self, key: KeyInfo) -> None:
        """The key's turns-per-minute limit, counted across every ingress
        replica by the same keystore actor; raises ``RateLimited``. If the
        keystore is unreachable the turn goes through: a limit is not worth
        a caller hearing silence."""
        if not key.rate_limit_per_min:
            return
        try:
            async with asyncio.timeout(KEYSTORE_TIMEOUT_S):
                ok, retry_after_s = await self._actor().admit.remote(key.key_id, key.rate_limit_per_min)
        except KEYSTORE_ERRORS:
            log.warning("keystore unavailable; admitting the turn", exc_info=True)
            self._keystore = None
            return
        if not ok:
            raise RateLimited(key.name, key.rate_limit_per_min, retry_after_s)

    def charge(self, turn: TurnRequest, cost_usd: float) -> None:
        """Charge a finished turn of a metered key; the reply refreshes the cache.
        Any other key's turn is not charged."""
        key_id = turn.api_key_id
        if key_id not in self._metered or not cost_usd:
            return
        self._cache.charging(key_id, cost_usd)
        self._send(key_id, turn, cost_usd)

    def charge_after_reply(self, turn: TurnRequest, cost_usd: float) -> BackgroundTask | None:
        """``charge``, as the background task of the turn's reply (a
        ``ChargedResponse``), so sending it costs the reply nothing. The
        charge is owed from now: the key's next turn counts it, and waits for it."""
        key_id = turn.api_key_id
        if key_id not in self._metered or not cost_usd:
            return None
        self._cache.charging(key_id, cost_usd)
        owed = asyncio.get_running_loop().create_future()
        self._pending[key_id] = owed

        async def send() -> None:
            try:
                self._send(key_id, turn, cost_usd)  # the charge's own settling is now what is waited for
            finally:
                if self._pending.get(key_id) is owed:
                    del self._pending[key_id]
                owed.set_result(None)

        return BackgroundTask(send)

    def _send(self, key_id: str, turn: TurnRequest, cost_usd: float) -> None:
        request_id, timestamp_us = turn_ref(turn.request_id, turn.received_at)
        try:
            ref = self._actor().charge.remote(key_id, cost_usd, turn.received_at, request_id, timestamp_us)
        except KEYSTORE_ERRORS:
            log.warning("keystore unavailable; turn of key %s not charged", key_id, exc_info=True)
            self._keystore = None
            self._cache.answered(key_id, cost_usd)
            return
        task = asyncio.ensure_future(self._settle(key_id, cost_usd, ref))
        self._pending[key_id] = task

    async def _charges_settled(self, key_id: str) -> None:
        """Wait (at most ``CHARGE_WAIT_S``) for the key's charge on its way,
        following an owed charge to its sending and on to its reply."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CHARGE_WAIT_S
        while (pending := self._pending.get(key_id)) is not None and not pending.done():
            left = deadline - loop.time()
            if left <= 0:
                return
            await asyncio.wait([pending], timeout=left)

    async def me(self, key: KeyInfo) -> Allowance | None:
        """The key's standing, fresh from the keystore (None: not metered)."""
        return await self._ask(key.key_id, strict=True) if key.metered else None

    async def top_up(self, key_id: str, amount_usd: float) -> Allowance | None:
        async with asyncio.timeout(10 * KEYSTORE_TIMEOUT_S):  # stores an entry beside the turn log
            allowance = await self._actor().top_up.remote(key_id, amount_usd)
        if allowance is not None:
            self._cache.update(allowance)
        return allowance

    async def _ask(self, key_id: str, strict: bool = False) -> Allowance | None:
        try:
            allowance = await self._allowance(key_id)
        except KEYSTORE_ERRORS:
            self._keystore = None
            if strict:
                raise
            log.warning("keystore unavailable; admitting the turn", exc_info=True)
            return None
        if allowance is not None:
            self._cache.update(allowance)
        return allowance

    async def _allowance(self, key_id: str) -> Allowance | None:
        """Asked once more if the handle is to a keystore that is gone (one
        killed and made anew is found again by name); a read, safe to repeat."""
        for attempt in range(2):
            try:
                async with asyncio.timeout(KEYSTORE_TIMEOUT_S):
                    return await self._actor().allowance.remote(key_id)
            except RayActorError:
                self._keystore = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _settle(self, key_id: str, cost_usd: float, ref) -> None:
        allowance = None
        try:
            allowance = await ref
        except RayError:
            log.warning("charge of a turn of key %s was lost with the keystore", key_id, exc_info=True)
            self._keystore = None
        finally:
            self._cache.answered(key_id, cost_usd, allowance)
            if self._pending.get(key_id) is asyncio.current_task():
                del self._pending[key_id]

    def _actor(self):
        if self._keystore is None:
            self._keystore = self._lookup()
        return self._keystore


class ChargedResponse(Response):
    """A reply whose background task (its turn's charge) runs even if the
    reply could not be sent: a client gone by then still spent the turn.
    Starlette's ``Response`` skips its background task when sending fails."""

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except BaseException:
            if self.background is not None:
                await self.background()
            raise


def credit_header(key: KeyInfo, allowance: Allowance | None) -> dict[str, str]:
    """``x-nemo-credit-remaining``: the key's credit (USD) when the turn was admitted."""
    if not key.has_credit or allowance is None or allowance.credit_remaining_usd is None:
        return {}
    return {"x-nemo-credit-remaining": f"{allowance.credit_remaining_usd:.6f}"}


def me_json(key: KeyInfo, allowance: Allowance | None) -> dict:
    """``GET /v1/me``: who the key is and, if metered, what it has left."""
    body = {"object": "api_key", "name": key.name, "models": list(key.models), "rate_limit_per_min": key.rate_limit_per_min}
    spend = allowance.as_json() if allowance is not None else {}
    return body | {"metered": allowance is not None} | spend


def top_up_amount(body: bytes) -> float:
    try:
        amount = json.loads(body or b"{}").get("amount_usd")
    except (ValueError, AttributeError, RecursionError):
        raise InvalidRequest("the body must be a JSON object: {\"amount_usd\": number}") from None
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 < amount < 1e9:
        raise InvalidRequest("amount_usd must be a positive number of US dollars", param="amount_usd")
    return float(amount)


def _spent_part(allowance: Allowance | None) -> str:
    if allowance is not None and allowance.credit_remaining_usd is not None and allowance.credit_remaining_usd <= 0:
        return "credit"
    period = allowance.period if allowance is not None else "month"
    return f"budget for this {period}"
