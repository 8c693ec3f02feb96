"""The dashboard's recent turns: compact rows, a bounded ring, a filter.

- ``TurnRow``: what the dashboard shows of one turn (no messages, no key
  id), made from a ``TurnRecord`` by the caller replica's recorder when it
  sends its delta, not on the turn's path.
- ``RecentTurns``: the hub's ring of the last ``capacity`` rows (default
  5000: 30 s at 10k turns per minute), each numbered by a sequence number
  ``seq`` (1, 2, ...; contiguous). ``since(cursor, ...)`` answers the rows
  after ``cursor`` that match a ``TurnFilter``, newest first, at most
  ``limit``; what it could not send is counted, never silently lost:
  ``skipped`` (matching rows past ``limit``) and ``missed`` (rows that left
  the ring before this reader asked; matching or not). A reader that
  always passes back the ``last_seq`` it was given receives each row at
  most once. Memory: at most ``capacity`` rows, whatever the rate.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from nemo_turnlog.record import TurnRecord

__all__ = ["RecentTurns", "TurnFilter", "TurnRow", "TurnsSince"]

ROW_FIELDS = (
    "seq", "time_s", "conversation", "model_group", "endpoint", "status", "http_status", "error_type",
    "ttft_s", "total_s", "prompt_tokens", "completion_tokens", "cost_usd", "fallbacks", "hedged", "cache_hit",
)  # fmt: skip


class TurnRow(NamedTuple):
    """One turn as the dashboard lists it. Times in seconds (``time_s``:
    the turn's start, Unix time); ``attempts``: ``(endpoint, outcome,
    duration_s, http_status)`` per upstream attempt, in order. A named
    tuple: made and pickled several times faster than a dataclass (a
    replica makes one per turn, once a second, in a batch)."""

    request_id: str
    time_s: float
    conversation: str | None
    model_group: str
    endpoint: str | None
    status: str
    http_status: int
    error_type: str | None
    ttft_s: float | None
    total_s: float
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None
    fallbacks: int
    hedged: bool
    cache_hit: bool
    attempts: tuple[tuple[str, str, float, int | None], ...] = ()

    @classmethod
    def of(cls, record: TurnRecord) -> TurnRow:
        return cls(
            record.request_id, record.timestamp.timestamp(), record.conversation_id, record.model_group,
            record.endpoint, record.status, record.http_status, record.error_type, record.ttft_s, record.total_s,
            record.prompt_tokens, record.completion_tokens, record.cost_usd, record.fallback_count, record.hedged,
            record.cache_hit, tuple([(a.endpoint, a.outcome, a.duration_s, a.http_status) for a in record.attempts]),
        )  # fmt: skip

    def as_list(self, seq: int) -> list:
        """The row in ``ROW_FIELDS`` order (compact JSON: no repeated keys)."""
        return [
            seq, round(self.time_s, 3), self.conversation, self.model_group, self.endpoint, self.status,
            self.http_status, self.error_type, _ms(self.ttft_s), _ms(self.total_s), self.prompt_tokens,
            self.completion_tokens, self.cost_usd, self.fallbacks, self.hedged, self.cache_hit,
        ]  # fmt: skip

    def detail(self, seq: int) -> dict:
        """The row with its attempts, for a click on it."""
        attempts = [
            {"endpoint": endpoint, "outcome": outcome, "duration_s": _ms(duration_s), "http_status": status}
            for endpoint, outcome, duration_s, status in self.attempts
        ]
        return {**dict(zip(ROW_FIELDS, self.as_list(seq))), "request_id": self.request_id, "attempts": attempts}


def _ms(value_s: float | None) -> float | None:
    return None if value_s is None else round(value_s, 4)


@dataclass(frozen=True, slots=True)
class TurnFilter:
    """Which rows a reader wants: each field None (any) or the exact value;
    ``conversation`` matches a prefix of the conversation id."""

    model_group: str | None = None
    endpoint: str | None = None
    status: str | None = None
    conversation: str | None = None

    def matches(self, row: TurnRow) -> bool:
        return (
            (self.model_group is None or row.model_group == self.model_group)
            and (self.endpoint is None or (row.endpoint or "") == self.endpoint)
            and (self.status is None or row.status == self.status)
            and (self.conversation is None or (row.conversation or "").startswith(self.conversation))
        )


ANY = TurnFilter()


@dataclass(frozen=True, slots=True)
class TurnsSince:
    """``RecentTurns.since``'s answer: ``rows`` as ``(seq, row)``, newest
    first; ``last_seq``, the cursor to pass next time."""

    rows: list[tuple[int, TurnRow]]
    last_seq: int
    skipped: int  # matching rows after the cursor not sent (past the limit)
    missed: int  # rows after the cursor that had left the ring (matching or not)


class RecentTurns:
    """The last ``capacity`` turn rows; see the module docstring."""

    def __init__(self, capacity: int = 5000):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._rows: deque[TurnRow] = deque(maxlen=capacity)
        self._last_seq = 0

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def first_seq(self) -> int:
        """The oldest row's number (``last_seq + 1`` when empty)."""
        return self._last_seq - len(self._rows) + 1

    def __len__(self) -> int:
        return len(self._rows)

    def extend(self, rows: Iterable[TurnRow]) -> None:
        for row in rows:
            self._rows.append(row)
            self._last_seq += 1

    def since(self, cursor: int, turn_filter: TurnFilter = ANY, limit: int = 200) -> TurnsSince:
        """Rows numbered after ``cursor`` (0: from the start) that match,
        newest first, at most ``limit``. A cursor ahead of ``last_seq``
        (another ring's, e.g. before a restart) reads as 0."""
        if cursor < 0 or cursor > self._last_seq:
            cursor = 0
        first = self.first_seq
        missed = max(0, first - 1 - cursor)
        rows: list[tuple[int, TurnRow]] = []
        skipped = 0
        seq = self._last_seq
        for row in reversed(self._rows):
            if seq <= cursor:
                break
            if turn_filter.matches(row):
                if len(rows) < limit:
                    rows.append((seq, row))
                else:
                    skipped += 1
            seq -= 1
        return TurnsSince(rows, self._last_seq, skipped, missed)

    def get(self, seq: int) -> TurnRow | None:
        """The row numbered ``seq``, if the ring still holds it."""
        first = self.first_seq
        if not first <= seq <= self._last_seq:
            return None
        return self._rows[seq - first]
