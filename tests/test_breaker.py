"""Circuit breaker: pure, fake clock."""

import pytest

from router.breaker import BreakerState, CircuitBreaker
from router.config import BreakerConfig
from router.outcome import OutcomeKind
from router.simulation import ManualClock

FAIL = OutcomeKind.UPSTREAM_ERROR
OK = OutcomeKind.OK


def make(clock=None, **overrides):
    clock = clock or ManualClock(100.0)
    config = BreakerConfig(**{"consecutive_failures": 3, "cooldown_s": 5, "max_cooldown_s": 20, **overrides})
    return CircuitBreaker(config, clock, probe_timeout_s=30.0), clock


def trip(breaker, times=3):
    for _ in range(times):
        breaker.observe(FAIL)


def test_opens_after_consecutive_failures_and_a_success_resets_the_run():
    breaker, _ = make()
    trip(breaker, 2)
    breaker.observe(OK)
    trip(breaker, 2)
    assert breaker.state() is BreakerState.CLOSED and breaker.available()
    breaker.observe(OutcomeKind.TIMEOUT)
    assert breaker.state() is BreakerState.OPEN and not breaker.available()


@pytest.mark.parametrize(
    "kind", [OutcomeKind.CONNECT_ERROR, OutcomeKind.TIMEOUT, OutcomeKind.UPSTREAM_ERROR, OutcomeKind.RATE_LIMITED, OutcomeKind.DISCONNECTED, OutcomeKind.PROTOCOL_ERROR]
)
def test_every_health_failure_kind_counts(kind):
    breaker, _ = make()
    for _ in range(3):
        breaker.observe(kind)
    assert breaker.state() is BreakerState.OPEN


def test_cancelled_and_rejected_say_nothing_about_health():
    breaker, _ = make()
    for _ in range(10):
        breaker.observe(OutcomeKind.CANCELLED)
        breaker.observe(OutcomeKind.REQUEST_REJECTED)
    trip(breaker, 2)
    breaker.observe(OutcomeKind.CANCELLED)  # does not break the run either
    assert breaker.consecutive_failures == 2 and breaker.state() is BreakerState.CLOSED


def test_opens_on_error_rate_over_the_window_with_enough_requests():
    breaker, clock = make(consecutive_failures=100, error_rate=0.5, min_requests=10, window_s=30)
    for _ in range(4):
        breaker.observe(FAIL)
        breaker.observe(OK)
    breaker.observe(FAIL)  # 5 of 9: not enough requests yet
    assert breaker.state() is BreakerState.CLOSED
    breaker.observe(OK)  # a success never trips
    breaker.observe(FAIL)  # 6 of 11
    assert breaker.state() is BreakerState.OPEN


def test_old_attempts_leave_the_window():
    breaker, clock = make(consecutive_failures=100, error_rate=0.5, min_requests=4, window_s=10)
    trip(breaker, 3)
    clock.advance(11)
    breaker.observe(OK)
    breaker.observe(OK)
    breaker.observe(OK)
    breaker.observe(FAIL)  # 1 of 4 within the window
    assert breaker.state() is BreakerState.CLOSED


def test_half_opens_after_cooldown_with_a_single_probe_and_closes_on_success():
    breaker, clock = make()
    trip(breaker)
    clock.advance(4.9)
    assert breaker.state() is BreakerState.OPEN
    clock.advance(0.2)
    assert breaker.state() is BreakerState.HALF_OPEN and breaker.available()
    breaker.started()
    assert not breaker.available()  # one probe at a time
    breaker.observe(OK)
    assert breaker.state() is BreakerState.CLOSED and breaker.available()


def test_probe_failure_reopens_with_a_growing_capped_cooldown():
    breaker, clock = make()
    trip(breaker)
    cooldowns = []
    for _ in range(4):
        opened_at = clock()
        clock.advance(breaker.open_until_s - opened_at)
        cooldowns.append(breaker.open_until_s - opened_at)
        assert breaker.state() is BreakerState.HALF_OPEN
        breaker.started()
        breaker.observe(FAIL)
    assert cooldowns == [5, 10, 20, 20]
    assert breaker.state() is BreakerState.OPEN


def test_ejection_growth_starts_over_after_a_long_healthy_spell():
    breaker, clock = make()
    trip(breaker)
    clock.advance(5)
    breaker.observe(OK)  # probe succeeds
    trip(breaker)
    assert breaker.open_until_s - clock() == 10  # flapping: grows
    clock.advance(10)
    breaker.observe(OK)
    clock.advance(20)  # closed for max_cooldown_s
    trip(breaker)
    assert breaker.open_until_s - clock() == 5


def test_outcomes_while_open_are_ignored():
    breaker, clock = make()
    trip(breaker)
    breaker.observe(OK)  # a turn sent before the opening
    assert breaker.state() is BreakerState.OPEN
    clock.advance(5)
    assert breaker.state() is BreakerState.HALF_OPEN


def test_an_uninformative_probe_frees_the_slot_and_a_lost_one_times_out():
    breaker, clock = make()
    trip(breaker)
    clock.advance(5)
    breaker.started()
    breaker.observe(OutcomeKind.CANCELLED)
    assert breaker.available() and breaker.state() is BreakerState.HALF_OPEN
    breaker.started()
    clock.advance(29)
    assert not breaker.available()
    clock.advance(2)  # the probe's report never came: allow another
    assert breaker.available()


def test_retry_after_holds_the_endpoint_out_at_least_that_long():
    breaker, clock = make()
    breaker.observe(OutcomeKind.RATE_LIMITED, retry_after_s=7.0)
    assert breaker.state() is BreakerState.OPEN and breaker.ejections == 0
    clock.advance(6.9)
    assert not breaker.available()
    clock.advance(0.2)
    assert breaker.state() is BreakerState.HALF_OPEN
    breaker.observe(OK)
    assert breaker.state() is BreakerState.CLOSED


def test_retry_after_longer_than_the_cooldown_wins_and_extends_an_open_breaker():
    breaker, clock = make()
    trip(breaker, 2)
    breaker.observe(OutcomeKind.UPSTREAM_ERROR, retry_after_s=12.0)  # the 3rd failure trips
    assert breaker.open_until_s - clock() == 12.0
    breaker.observe(OutcomeKind.RATE_LIMITED, retry_after_s=30.0)  # while open: extends
    assert breaker.open_until_s - clock() == 30.0
    breaker.observe(OutcomeKind.RATE_LIMITED, retry_after_s=1.0)  # never shortens
    assert breaker.open_until_s - clock() == 30.0


def test_retry_after_on_a_success_or_a_rejected_request_is_ignored():
    breaker, _ = make()
    breaker.observe(OK, retry_after_s=10)
    breaker.observe(OutcomeKind.REQUEST_REJECTED, retry_after_s=10)
    assert breaker.state() is BreakerState.CLOSED
