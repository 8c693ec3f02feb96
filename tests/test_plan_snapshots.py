"""The snapshot planner's timer: which kinds of turn it refreshes, and when
it stops (pure, fake clock)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.plan_snapshots import SnapshotSchedule


def test_a_kind_is_due_one_interval_after_its_last_fetch_not_before():
    schedule = SnapshotSchedule(interval_s=0.05, idle_after_s=2.0)
    schedule.fetched("a", now_s=10.0)
    assert schedule.due(10.049) == []
    assert schedule.due(10.05) == ["a"]
    schedule.fetched("a", now_s=10.06)
    assert schedule.due(10.07) == []


def test_only_kinds_with_a_snapshot_are_warm_and_idle_ones_go_cold():
    schedule = SnapshotSchedule(interval_s=0.05, idle_after_s=2.0)
    assert not schedule.warm("a", 0.0)
    schedule.used("a", 0.0)  # planned without a snapshot yet (the tracker was away)
    assert not schedule.warm("a", 0.0)
    schedule.fetched("a", 0.0)
    assert schedule.warm("a", 1.9)
    assert not schedule.warm("a", 2.0)


def test_turns_keep_a_kind_on_the_timer_and_an_idle_router_goes_quiet():
    schedule = SnapshotSchedule(interval_s=0.05, idle_after_s=1.0)
    schedule.fetched("a", 0.0)
    schedule.fetched("b", 0.0)
    schedule.used("a", 0.9)
    assert set(schedule.due(1.0)) == {"a"}  # b idle since 0.0: dropped
    assert schedule.active
    assert schedule.due(2.0) == []
    assert not schedule.active  # a idle since 0.9: nothing left to refresh


def test_a_kind_fetched_again_after_going_cold_is_back_on_the_timer():
    schedule = SnapshotSchedule(interval_s=0.05, idle_after_s=1.0)
    schedule.fetched("a", 0.0)
    assert schedule.due(5.0) == [] and not schedule.active
    schedule.fetched("a", 5.0)
    schedule.used("a", 5.0)
    assert schedule.warm("a", 5.01)
    assert schedule.due(5.1) == ["a"]


def test_the_default_idle_time_outlasts_many_intervals():
    assert SnapshotSchedule(0.05).idle_after_s >= 2.0
    assert SnapshotSchedule(0.5).idle_after_s == 20.0
    with pytest.raises(ValueError):
        SnapshotSchedule(0)


@given(st.lists(st.tuples(st.sampled_from("abc"), st.floats(0, 0.2)), max_size=60))
def test_no_kind_is_refreshed_twice_within_an_interval(events):
    """Whatever the order of uses and ticks, a kind comes due at most once
    per interval if every due refresh is fetched at once."""
    schedule = SnapshotSchedule(interval_s=0.05, idle_after_s=1.0)
    now_s, last_refresh = 0.0, {}
    for key, step_s in events:
        now_s += step_s
        schedule.fetched(key, now_s) if key not in last_refresh else schedule.used(key, now_s)
        last_refresh.setdefault(key, now_s)
        for due in schedule.due(now_s):
            assert now_s - last_refresh[due] >= 0.05
            last_refresh[due] = now_s
            schedule.fetched(due, now_s)
