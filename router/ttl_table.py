"""A bounded map whose entries expire when left untouched.

The routing state keeps small facts per conversation (its turn count, the
endpoint it is pinned to); conversations come and go without saying
goodbye, so every such table must forget on its own and never grow past a
bound, whatever clients send.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["TtlTable"]

V = TypeVar("V")


class TtlTable(Generic[V]):
    """Key -> value, least recently written first.

    An entry lives ``ttl_s`` seconds after its last ``put`` (a ``get`` does
    not extend it: a pin or a count is only as fresh as the turn that set
    it). At most ``max_entries`` are kept; a ``put`` beyond that evicts the
    least recently written. Memory is O(``max_entries``); every operation is
    O(1) amortised (expired entries are dropped from the old end as they are
    met). Times are the caller's clock, in seconds.
    """

    __slots__ = ("_entries", "_ttl_s", "_max_entries")

    def __init__(self, *, ttl_s: float, max_entries: int):
        if ttl_s <= 0 or max_entries < 1:
            raise ValueError("a TtlTable needs ttl_s > 0 and max_entries >= 1")
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._ttl_s = ttl_s
        self._max_entries = max_entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, now_s: float) -> V | None:
        """The live value under ``key``, or None (absent or expired)."""
        self._drop_expired(now_s)
        entry = self._entries.get(key)
        return None if entry is None else entry[1]

    def put(self, key: Hashable, value: V, now_s: float) -> None:
        """Set ``key`` from now for ``ttl_s``; evict the oldest over the bound."""
        self._drop_expired(now_s)
        self._entries[key] = (now_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def values(self, now_s: float) -> list[V]:
        """Every live value, oldest first (O(n): for reports, not turns)."""
        self._drop_expired(now_s)
        return [value for _, value in self._entries.values()]

    def pop(self, key: Hashable) -> V | None:
        entry = self._entries.pop(key, None)
        return None if entry is None else entry[1]

    def carried(
        self, *, ttl_s: float, max_entries: int, now_s: float, keep: Callable[[Hashable, V], bool] | None = None
    ) -> "TtlTable[V]":
        """A new table with these bounds holding this one's live entries
        (those ``keep`` accepts), each with the time it was written, in the
        same order; the oldest go first past ``max_entries`` (a redeploy)."""
        self._drop_expired(now_s)
        table: TtlTable[V] = TtlTable(ttl_s=ttl_s, max_entries=max_entries)
        for key, (written_s, value) in self._entries.items():
            if (keep is None or keep(key, value)) and now_s - written_s < ttl_s:
                table._entries[key] = (written_s, value)
        while len(table._entries) > max_entries:
            table._entries.popitem(last=False)
        return table

    def _drop_expired(self, now_s: float) -> None:
        # Written in clock order, so the expired ones are at the old end.
        entries = self._entries
        while entries:
            written_s, _ = next(iter(entries.values()))
            if now_s - written_s < self._ttl_s:
                break
            entries.popitem(last=False)
