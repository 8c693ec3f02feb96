"""Budget periods: a UTC day or a UTC calendar month.

    period_bounds("month", at_s) -> (start_s, end_s)   # [start, end), Unix seconds

A budget resets at its period's start: 00:00 UTC each day, or 00:00 UTC on
the first of each month. Pure; times are Unix seconds (wall clock), which is
what the turn log's ``timestamp`` column holds.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Literal

__all__ = ["Period", "PERIODS", "period_bounds"]

Period = Literal["day", "month"]
PERIODS: tuple[Period, ...] = ("day", "month")


def period_bounds(period: Period, at_s: float) -> tuple[float, float]:
    """The ``[start, end)`` of the ``period`` holding ``at_s``, in Unix seconds."""
    moment = datetime.fromtimestamp(at_s, tz=timezone.utc)
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return start.timestamp(), (start + timedelta(days=1)).timestamp()
    if period != "month":
        raise ValueError(f"unknown budget period {period!r}; expected one of {PERIODS}")
    start = start.replace(day=1)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start.timestamp(), end.timestamp()
