"""Peak-EWMA estimator: pure, fake clock."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.peak_ewma import PeakEwma
from router.simulation import ManualClock


def test_no_data_until_the_first_sample():
    ewma = PeakEwma(decay_s=5.0, clock=ManualClock())
    assert ewma.value() is None and ewma.age_s() is None and ewma.samples == 0
    ewma.observe(0.2)
    assert ewma.value() == 0.2 and ewma.samples == 1


def test_a_higher_sample_replaces_the_estimate_at_once():
    clock = ManualClock()
    ewma = PeakEwma(decay_s=5.0, clock=clock)
    ewma.observe(0.04)
    clock.advance(0.01)
    ewma.observe(0.4)
    assert ewma.value() == 0.4


def test_a_lower_sample_pulls_the_estimate_down_by_elapsed_time():
    clock = ManualClock()
    ewma = PeakEwma(decay_s=5.0, clock=clock)
    ewma.observe(0.4)
    ewma.observe(0.04)
    assert ewma.value() == pytest.approx(0.4)  # no time has passed yet
    clock.advance(5.0)
    w = math.exp(-1.0)
    assert ewma.value() == pytest.approx(0.4 * w + 0.04 * (1 - w))
    clock.advance(100.0)
    assert ewma.value() == pytest.approx(0.04)  # never below the latest sample


def test_reading_is_pure_and_ignores_bad_samples():
    clock = ManualClock()
    ewma = PeakEwma(decay_s=5.0, clock=clock)
    ewma.observe(0.3)
    ewma.observe(0.1)
    clock.advance(2.0)
    assert ewma.value() == ewma.value()
    before = ewma.value()
    for bad in (-1.0, math.nan, math.inf):
        ewma.observe(bad)
    assert ewma.value() == before and ewma.samples == 2
    with pytest.raises(ValueError):
        PeakEwma(decay_s=0)


@given(st.lists(st.tuples(st.floats(0, 10), st.floats(0, 5)), min_size=1, max_size=40))
def test_estimate_stays_between_latest_sample_and_highest_sample(samples):
    clock = ManualClock()
    ewma = PeakEwma(decay_s=5.0, clock=clock)
    highest_s = 0.0
    for sample_s, gap_s in samples:
        ewma.observe(sample_s)
        highest_s = max(highest_s, sample_s)
        clock.advance(gap_s)
        assert sample_s - 1e-9 <= ewma.value() <= highest_s + 1e-9
