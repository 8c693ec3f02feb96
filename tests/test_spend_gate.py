"""The ingress's spend gate over a stand-in keystore (a real ``SpendLedger``
behind awaitable ``.remote`` calls, as Ray's handles give): admission from
the cached copy, the wait for a key's charge on its way, refusals, top-ups,
and a keystore that is not there. No Ray."""

from __future__ import annotations

import asyncio

import pytest

from deployments.spend_gate import CHARGE_WAIT_S, SpendGate, credit_header, me_json, top_up_amount
from router.config import parse_config
from router.errors import InvalidRequest
from router.keys import Charge, InsufficientQuota, KeyRing, SpendLedger, hash_key
from router.simulation import ManualClock
from router.turn import TurnRequest

NOW = 1_780_000_000.0
CONFIG = parse_config({
    "model_groups": {"g": {"endpoints": [{"name": "e", "base_url": "http://127.0.0.1:9/v1", "model": "m"}]}},
    "auth": {"keys": [
        {"name": "trial", "hash": hash_key("sk-trial"), "credit_usd": 0.01},
        {"name": "free", "hash": hash_key("sk-free")},
    ]},
})  # fmt: skip
RING = KeyRing(CONFIG.auth)
TRIAL, FREE = RING.authenticate("Bearer sk-trial"), RING.authenticate("Bearer sk-free")


class Method:
    def __init__(self, keystore: "FakeKeystore", run):
        self._keystore, self._run = keystore, run

    def remote(self, *args):
        self._keystore.calls.append(self._run.__name__)
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(self._keystore.delay_s, future.set_result, self._run(*args))
        return future


class FakeKeystore:
    def __init__(self, clock):
        self.ledger = SpendLedger(CONFIG.auth.keys, clock=clock)
        self.calls: list[str] = []
        self.delay_s = 0.0
        self.allowance = Method(self, self.ledger.allowance)
        self.top_up = Method(self, self.ledger.top_up)
        self.charge = Method(self, self._charge)

    def _charge(self, key_id, usd, at_s, request_id, timestamp_us):
        return self.ledger.charge(Charge(key_id, usd, at_s, (request_id, timestamp_us)))


def turn(key: str = "trial") -> TurnRequest:
    return TurnRequest("r", "g", ("e",), 1, {}, False, False, received_at=NOW, api_key_id=key)


def run(coroutine):
    return asyncio.run(coroutine)


def test_a_known_key_is_admitted_with_no_keystore_call_and_refused_once_spent():
    async def scenario():
        clock = ManualClock(NOW)
        keystore = FakeKeystore(clock)
        gate = SpendGate(CONFIG, lookup=lambda: keystore, clock=clock)
        assert await gate.admit(FREE) is None and keystore.calls == []  # not metered: nothing to ask
        first = await gate.admit(TRIAL)
        assert keystore.calls == ["allowance"] and credit_header(TRIAL, first) == {"x-nemo-credit-remaining": "0.010000"}
        await gate.admit(TRIAL)
        assert keystore.calls == ["allowance"]  # the cached copy
        keystore.delay_s = 0.05
        gate.charge(turn(), 0.02)  # crosses zero; the reply is on its way
        with pytest.raises(InsufficientQuota) as refused:
            await gate.admit(TRIAL)  # waited for the reply, then refused on it
        assert keystore.calls == ["allowance", "_charge"]
        assert refused.value.http_status == 429 and "credit" in refused.value.message
        with pytest.raises(InsufficientQuota):
            await gate.admit(TRIAL)  # still within a second: no call
        assert keystore.calls == ["allowance", "_charge"]
        keystore.ledger.top_up("trial", 1.0)  # through another replica
        clock.advance(1.0)
        assert (await gate.admit(TRIAL)).ok  # asked again, and let in
        assert keystore.calls[-1] == "allowance"

    run(scenario())


def test_a_charge_due_after_a_reply_holds_the_keys_next_turn_from_the_start():
    """A non-streamed turn's charge is sent once its reply is out, but the
    key's next turn can reach this replica before that background task has
    run (the client asks again the moment it has the reply): it must wait
    for the charge, not admit on a copy that predates it."""

    async def scenario():
        clock = ManualClock(NOW)
        keystore = FakeKeystore(clock)
        gate = SpendGate(CONFIG, lookup=lambda: keystore, clock=clock)
        assert (await gate.admit(TRIAL)).ok
        send_charge = gate.charge_after_reply(turn(), 0.02)  # crosses zero
        next_turn = asyncio.ensure_future(gate.admit(TRIAL))
        await asyncio.wait([next_turn], timeout=0.05)
        assert not next_turn.done()  # held for the charge, not admitted on the old copy
        await send_charge()
        with pytest.raises(InsufficientQuota):
            await next_turn
        assert gate.charge_after_reply(turn(), 0.0) is None  # nothing to charge

    run(scenario())


def test_a_charge_due_after_a_reply_is_sent_even_if_the_reply_was_not():
    """A client gone before its reply was sent still spent the turn."""
    from starlette.responses import Response

    from deployments.spend_gate import ChargedResponse

    async def scenario():
        clock = ManualClock(NOW)
        keystore = FakeKeystore(clock)
        gate = SpendGate(CONFIG, lookup=lambda: keystore, clock=clock)
        await gate.admit(TRIAL)

        async def client_gone(message):
            raise OSError("the client went away")

        for response_type, charged in ((Response, False), (ChargedResponse, True)):
            response = response_type(b"{}", background=gate.charge_after_reply(turn(), 0.001))
            with pytest.raises(OSError):
                await response({"type": "http"}, None, client_gone)
            assert ("_charge" in keystore.calls) is charged

    run(scenario())


def test_a_charge_slower_than_the_wait_for_it_still_counts_against_the_key():
    """A loaded keystore answers a charge after the turn's wait for it has
    given up: the replica's copy, less the charge on its way, decides."""

    async def scenario():
        clock = ManualClock(NOW)
        keystore = FakeKeystore(clock)
        gate = SpendGate(CONFIG, lookup=lambda: keystore, clock=clock)
        assert (await gate.admit(TRIAL)).ok
        keystore.delay_s = CHARGE_WAIT_S + 0.5
        gate.charge(turn(), 0.02)  # crosses zero; the reply comes after the wait
        with pytest.raises(InsufficientQuota):
            await gate.admit(TRIAL)

    run(scenario())


def test_an_unreachable_keystore_judges_a_key_it_saw_on_its_last_copy():
    async def scenario():
        clock = ManualClock(NOW)
        keystore = FakeKeystore(clock)
        reachable = True

        def lookup():
            if not reachable:
                raise ValueError("Failed to look up actor")
            return keystore

        gate = SpendGate(CONFIG, lookup=lookup, clock=clock)
        await gate.admit(TRIAL)
        gate.charge(turn(), 0.02)
        with pytest.raises(InsufficientQuota):
            await gate.admit(TRIAL)
        gate._keystore, reachable = None, False  # gone, as after a lost call
        clock.advance(5.0)  # the refusal aged: the keystore is asked, and is not there
        with pytest.raises(InsufficientQuota):
            await gate.admit(TRIAL)  # the last copy says spent
        assert await gate.admit(FREE) is None  # not metered: never asked

    run(scenario())


def test_an_unreachable_keystore_admits_and_me_says_so():
    async def scenario():
        def gone():
            raise ValueError("Failed to look up actor")

        gate = SpendGate(CONFIG, lookup=gone)
        assert await gate.admit(TRIAL) is None
        gate.charge(turn(), 0.5)  # dropped, with a warning
        with pytest.raises(ValueError):
            await gate.me(TRIAL)

    run(scenario())


def test_me_and_top_up_bodies():
    async def scenario():
        clock = ManualClock(NOW)
        keystore = FakeKeystore(clock)
        gate = SpendGate(CONFIG, lookup=lambda: keystore, clock=clock)
        assert me_json(FREE, await gate.me(FREE)) == {
            "object": "api_key", "name": "free", "models": ["*"], "rate_limit_per_min": None, "metered": False}
        topped = await gate.top_up("trial", 0.5)
        body = me_json(TRIAL, await gate.me(TRIAL))
        assert body["credit_usd"] == pytest.approx(0.51) and body["credit_remaining_usd"] == pytest.approx(0.51)
        assert body["period"] == "month" and body["period_spend_usd"] == 0 and topped.credit_usd == pytest.approx(0.51)

    run(scenario())
    assert top_up_amount(b'{"amount_usd": 2}') == 2.0
    for bad in (b"[]", b"{", b'{"amount_usd": 0}', b'{"amount_usd": true}', b'{"amount_usd": "5"}', b"[" * 5000):
        with pytest.raises(InvalidRequest):
            top_up_amount(bad)


def test_only_metered_keys_are_charged():
    """A non-streamed turn reports its cost whatever its key (for the
    ``x-nemo-cost-usd`` header): a key with no credit or budget, or no key,
    costs no keystore call."""
    async def scenario():
        keystore = FakeKeystore(ManualClock(NOW))
        gate = SpendGate(CONFIG, lookup=lambda: keystore)
        gate.charge(turn("free"), 0.02)
        gate.charge(turn(None), 0.02)
        assert gate.charge_after_reply(turn("free"), 0.02) is None
        assert keystore.calls == []

    run(scenario())
