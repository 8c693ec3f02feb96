"""Credits and budgets, pure: periods on a fake UTC clock, the ledger's
charges, top-ups and recovery, the ingress's allowance cache, and the
overspend bound across replicas charging concurrently (property)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from router.keys import (
    AllowanceCache,
    ApiKeyConfig,
    AuthConfig,
    Charge,
    Decision,
    InsufficientQuota,
    KeyRing,
    SpendLedger,
    hash_key,
    period_bounds,
)
from router.simulation import ManualClock

HASH = hash_key("sk-spend-test")


def ts(*parts: int) -> float:
    return datetime(*parts, tzinfo=timezone.utc).timestamp()


def key(name: str = "trial", **limits) -> ApiKeyConfig:
    return ApiKeyConfig(name=name, hash=hash_key(f"sk-{name}"), **limits)


# -- config ------------------------------------------------------------------


def test_spend_limits_are_validated_at_start_up():
    assert key(credit_usd=5).metered and key(budget_usd=1).budget_period == "month"
    assert key(budget_usd=1, period="day").budget_period == "day"
    assert not key().metered
    for bad in ({"credit_usd": -1}, {"budget_usd": 0}, {"period": "day"}, {"budget_usd": 1, "period": "week"},
                {"credit_usd": float("inf")}, {"credit": 5}):
        with pytest.raises(ValidationError):
            key(**bad)


def test_keyring_says_which_keys_are_metered():
    ring = KeyRing(AuthConfig(keys=(ApiKeyConfig(name="a", hash=HASH, credit_usd=1),)))
    info = ring.authenticate("Bearer sk-spend-test")
    assert info.metered and info.has_credit


def test_insufficient_quota_is_openais_error_object():
    error = InsufficientQuota("trial", "credit")
    assert error.http_status == 429
    body = error.to_openai()["error"]
    assert body["type"] == "insufficient_quota" and body["code"] == "insufficient_quota"


# -- periods -------------------------------------------------------------------


def test_day_and_month_periods_start_at_midnight_utc():
    assert period_bounds("day", ts(2026, 3, 5, 23, 59, 59)) == (ts(2026, 3, 5), ts(2026, 3, 6))
    assert period_bounds("day", ts(2026, 3, 6)) == (ts(2026, 3, 6), ts(2026, 3, 7))
    assert period_bounds("month", ts(2026, 12, 31, 23, 0)) == (ts(2026, 12, 1), ts(2027, 1, 1))
    assert period_bounds("month", ts(2028, 2, 29, 12)) == (ts(2028, 2, 1), ts(2028, 3, 1))


@given(st.floats(min_value=0, max_value=4e9), st.sampled_from(["day", "month"]))
def test_every_moment_is_in_its_period(at_s, period):
    start, end = period_bounds(period, at_s)
    assert start <= at_s < end
    assert period_bounds(period, end)[0] == end  # periods tile time


# -- the ledger ------------------------------------------------------------------


def test_credit_draws_down_and_never_resets():
    clock = ManualClock(ts(2026, 1, 31, 23))
    ledger = SpendLedger([key(credit_usd=0.01)], clock=clock)
    assert ledger.allowance("trial").ok
    left = ledger.charge(Charge("trial", 0.006, clock()))
    assert left.credit_remaining_usd == pytest.approx(0.004) and left.ok
    clock.set(ts(2026, 2, 1, 1))  # a new month does not refill a credit
    crossed = ledger.charge(Charge("trial", 0.006, clock()))
    assert crossed.credit_remaining_usd == pytest.approx(-0.002) and not crossed.ok
    topped = ledger.top_up("trial", 0.01)
    assert topped.ok and topped.credit_usd == pytest.approx(0.02) and topped.credit_remaining_usd == pytest.approx(0.008)


def test_budget_resets_at_the_period_start():
    clock = ManualClock(ts(2026, 5, 10, 23, 30))
    ledger = SpendLedger([key(budget_usd=1.0, period="day")], clock=clock)
    spent = ledger.charge(Charge("trial", 1.2, clock()))
    assert not spent.ok and spent.period_spend_usd == pytest.approx(1.2)
    assert ledger.top_up("trial", 5) is None  # a budget is not topped up
    clock.set(ts(2026, 5, 11, 0, 0))
    fresh = ledger.allowance("trial")
    assert fresh.ok and fresh.period_spend_usd == 0 and fresh.budget_remaining_usd == 1.0
    assert fresh.as_json()["period_start"] == "2026-05-11T00:00:00Z"


def test_a_turn_is_charged_to_the_period_it_started_in():
    clock = ManualClock(ts(2026, 5, 11, 0, 0, 2))
    ledger = SpendLedger([key(budget_usd=1.0, period="day", credit_usd=10)], clock=clock)
    standing = ledger.charge(Charge("trial", 0.5, ts(2026, 5, 10, 23, 59, 59)))  # started yesterday
    assert standing.period_spend_usd == 0 and standing.credit_remaining_usd == pytest.approx(9.5)


def test_both_limits_must_have_room():
    ledger = SpendLedger([key(credit_usd=10, budget_usd=0.5)], clock=ManualClock(ts(2026, 1, 2)))
    standing = ledger.charge(Charge("trial", 0.6, ts(2026, 1, 2)))
    assert standing.credit_remaining_usd > 0 and not standing.ok


def test_unmetered_keys_are_not_tracked():
    ledger = SpendLedger([key(), key("paid", credit_usd=1)])
    assert ledger.key_ids == ("paid",)
    assert ledger.charge(Charge("trial", 1.0, 0)) is None and ledger.allowance("trial") is None


def test_recovery_counts_the_current_period_and_skips_turns_already_logged():
    clock = ManualClock(ts(2026, 7, 15, 12))
    ledger = SpendLedger([key(credit_usd=1.0, budget_usd=0.5)], clock=clock)
    logged = [
        Charge("trial", 0.2, ts(2026, 6, 30, 23), ("old", 1)),  # last month: credit only
        Charge("trial", 0.1, ts(2026, 7, 15, 11, 58), ("recent", 2)),
        Charge("other", 9.0, ts(2026, 7, 15, 11)),  # not a metered key
    ]
    ledger.recover(logged, top_ups=[("trial", 0.3), ("other", 1.0)])
    standing = ledger.allowance("trial")
    assert standing.credit_remaining_usd == pytest.approx(1.0 + 0.3 - 0.3)
    assert standing.period_spend_usd == pytest.approx(0.1)
    # The live charge of a turn the log already held is not counted again.
    again = ledger.charge(Charge("trial", 0.1, ts(2026, 7, 15, 11, 58), ("recent", 2)))
    assert again.period_spend_usd == pytest.approx(0.1)
    assert ledger.charge(Charge("trial", 0.1, ts(2026, 7, 15, 11, 58), ("recent", 2))).period_spend_usd == pytest.approx(0.2)


def test_configure_keeps_spend_and_takes_new_limits():
    ledger = SpendLedger([key(credit_usd=1.0)], clock=ManualClock(ts(2026, 1, 1)))
    ledger.charge(Charge("trial", 0.75, ts(2026, 1, 1)))
    ledger.configure([key(credit_usd=2.0)])
    assert ledger.allowance("trial").credit_remaining_usd == pytest.approx(1.25)


# -- the ingress's cache ---------------------------------------------------------


def test_cache_admits_on_a_good_copy_and_asks_again_after_a_refusal_ages():
    clock = ManualClock(ts(2026, 1, 1))
    ledger = SpendLedger([key(credit_usd=0.01)], clock=clock)
    cache = AllowanceCache(clock=clock, refusal_ttl_s=1.0)
    assert cache.decide("trial") is Decision.ASK
    cache.update(ledger.allowance("trial"))
    assert cache.decide("trial") is Decision.ADMIT
    cache.update(ledger.charge(Charge("trial", 0.02, clock())))
    assert cache.decide("trial") is Decision.REFUSE
    clock.advance(1.0)
    assert cache.decide("trial") is Decision.ASK  # a top-up may have come
    cache.update(ledger.top_up("trial", 1.0))
    assert cache.decide("trial") is Decision.ADMIT


def test_cache_keeps_the_newest_reply():
    clock = ManualClock(ts(2026, 1, 1))
    ledger = SpendLedger([key(credit_usd=1.0)], clock=clock)
    cache = AllowanceCache(clock=clock)
    first = ledger.charge(Charge("trial", 0.5, clock()))
    second = ledger.charge(Charge("trial", 0.6, clock()))
    cache.update(second)
    cache.update(first)  # arrived late
    assert cache.get("trial") == second and cache.decide("trial") is Decision.REFUSE


def test_an_exhausted_budget_is_asked_about_again_when_its_period_ends():
    clock = ManualClock(ts(2026, 1, 1, 23, 59, 59, ))
    ledger = SpendLedger([key(budget_usd=0.1, period="day")], clock=clock)
    cache = AllowanceCache(clock=clock, refusal_ttl_s=3600)
    cache.update(ledger.charge(Charge("trial", 0.2, clock())))
    assert cache.decide("trial") is Decision.REFUSE
    clock.set(ts(2026, 1, 2))
    assert cache.decide("trial") is Decision.ASK
    cache.update(ledger.allowance("trial"))
    assert cache.decide("trial") is Decision.ADMIT


MAX_TURN_USD = 0.05


def test_a_copy_admits_only_with_room_left_after_the_charges_on_their_way():
    clock = ManualClock(ts(2026, 1, 1))
    ledger = SpendLedger([key(credit_usd=0.01)], clock=clock)
    cache = AllowanceCache(clock=clock)
    cache.update(ledger.allowance("trial"))
    cache.charging("trial", 0.004)
    assert cache.decide("trial") is Decision.ADMIT and cache.owed("trial") == pytest.approx(0.004)
    cache.charging("trial", 0.007)  # 0.011 on its way: no room left
    assert cache.decide("trial") is Decision.REFUSE and not cache.admits("trial")
    cache.answered("trial", 0.004, ledger.charge(Charge("trial", 0.004, clock())))
    cache.answered("trial", 0.007)  # lost with the keystore: no longer counted
    assert cache.owed("trial") == 0 and cache.decide("trial") is Decision.ADMIT


@settings(max_examples=200, deadline=None)
@given(
    credit=st.floats(min_value=0.0, max_value=0.3),
    steps=st.lists(st.tuples(st.sampled_from(["turn", "reply"]), st.floats(min_value=MAX_TURN_USD / 5, max_value=MAX_TURN_USD),
                             st.integers(min_value=0, max_value=10)), min_size=5, max_size=150),
)
def test_a_lone_replica_never_overspends_by_more_than_one_turn_however_late_replies_come(credit, steps):
    """One replica, turns one after another, never waiting for replies:
    each charge reaches the ledger, and its reply the replica, whenever a
    ``reply`` step picks it. The charges it has on their way keep it honest."""
    clock = ManualClock(ts(2026, 3, 1, 12))
    ledger = SpendLedger([key(credit_usd=credit)], clock=clock)
    cache = AllowanceCache(clock=clock)
    in_flight: list[float] = []
    charged = 0.0
    for step, cost, pick in steps:
        clock.advance(0.3)
        if step == "reply" and in_flight:
            usd = in_flight.pop(pick % len(in_flight))
            cache.answered("trial", usd, ledger.charge(Charge("trial", usd, clock())))
            continue
        decision = cache.decide("trial")
        if decision is Decision.ASK:
            cache.update(ledger.allowance("trial"))
            decision = Decision.ADMIT if cache.admits("trial") else Decision.REFUSE
        if decision is Decision.ADMIT:  # the turn runs and ends; its charge goes out
            cache.charging("trial", cost)
            in_flight.append(cost)
            charged += cost
    assert charged <= credit + MAX_TURN_USD + 1e-9


# -- replicas charging concurrently ------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    replicas=st.integers(min_value=2, max_value=4),
    credit=st.floats(min_value=0.0, max_value=0.3),
    budget=st.floats(min_value=0.01, max_value=0.3),
    steps=st.lists(
        st.tuples(st.integers(min_value=0, max_value=3), st.floats(min_value=MAX_TURN_USD / 5, max_value=MAX_TURN_USD),
                  st.floats(min_value=0, max_value=300)),
        min_size=10,
        max_size=200,
    ),
)
def test_replicas_never_overspend_by_more_than_one_turn_each(replicas, credit, budget, steps):
    """Each replica runs one turn at a time: admit (from its cache, asking the
    ledger when it must), then charge and keep the reply. Steps of different
    replicas interleave at random, and the clock crosses day boundaries.
    Whatever the order, the credit is never overspent by more than one turn
    per replica, nor any day's budget."""
    clock = ManualClock(ts(2026, 3, 1, 22))
    ledger = SpendLedger([key(credit_usd=credit, budget_usd=budget, period="day")], clock=clock)
    caches = [AllowanceCache(clock=clock) for _ in range(replicas)]
    running: list[float | None] = [None] * replicas  # the running turn's start, per replica
    spent_total, spent_by_day = 0.0, {}
    for index, cost, wait_s in steps:
        replica = index % replicas
        clock.advance(wait_s)
        cache = caches[replica]
        if running[replica] is None:
            decision = cache.decide("trial")
            if decision is Decision.ASK:
                cache.update(ledger.allowance("trial"))
                decision = Decision.ADMIT if cache.get("trial").ok else Decision.REFUSE
            if decision is Decision.ADMIT:
                running[replica] = clock()
        else:
            started = running[replica]
            running[replica] = None
            cache.update(ledger.charge(Charge("trial", cost, started)))
            spent_total += cost
            day = period_bounds("day", started)[0]
            spent_by_day[day] = spent_by_day.get(day, 0.0) + cost
    slack = replicas * MAX_TURN_USD + 1e-9
    assert spent_total <= credit + slack
    assert all(spent <= budget + slack for spent in spent_by_day.values())
