"""Which conversation a turn belongs to, and its turn index there.

A voice call is a sequence of turns that resend a growing history; the
router learns which call a turn belongs to from the client, in this order
of precedence (the first valid one wins):

1. the ``x-nemo-conversation-id`` header;
2. ``metadata.conversation_id`` in the OpenAI body;
3. ``user`` in the OpenAI body (OpenAI's end-user id: for a voice app, the
   caller, which is the call for as long as it lasts).

An id is at most 128 visible ASCII characters (as for ``x-request-id``: it
lands in logs, tags and file names); anything else is ignored with a request
note, and the next source is tried. An id is a label, never a key: it
scopes nothing but the turn count and the endpoint affinity, both of which
are also scoped by the client's API key.

The turn index (1-based) is the client's ``x-nemo-conversation-turn``
header when it sends one (an integer 1..1,000,000), else counted by the
``LatencyTracker`` (``TurnCounter``), which every ingress replica shares.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from router.ttl_table import TtlTable

__all__ = [
    "CONVERSATION_HEADER",
    "CONVERSATION_TURN_HEADER",
    "Conversation",
    "ConversationKey",
    "TurnCounter",
    "conversation_of",
]

CONVERSATION_HEADER = "x-nemo-conversation-id"
CONVERSATION_TURN_HEADER = "x-nemo-conversation-turn"
MAX_TURN = 1_000_000

_ID = re.compile(r"[\x21-\x7e]{1,128}")
_TURN = re.compile(r"[0-9]{1,7}")

ConversationKey = tuple[str | None, str]
"""``(api_key_id, conversation_id)``: two keys never share a conversation."""


@dataclass(frozen=True, slots=True)
class Conversation:
    """A turn's conversation: its id, where it came from (``header``,
    ``metadata`` or ``user``) and the turn index the client gave (None: the
    router counts)."""

    id: str
    source: str
    client_turn: int | None = None


def _valid_id(value: Any) -> str | None:
    return value if isinstance(value, str) and _ID.fullmatch(value) else None


def _sources(header: str | None, raw: dict) -> list[tuple[str, Any, str]]:
    metadata = raw.get("metadata")
    sources = []
    if header is not None:
        sources.append(("header", header, CONVERSATION_HEADER))
    if isinstance(metadata, dict) and "conversation_id" in metadata:
        sources.append(("metadata", metadata["conversation_id"], "metadata.conversation_id"))
    if "user" in raw:
        sources.append(("user", raw["user"], "user"))
    return sources


def _client_turn(turn_header: str | None, notes: list[str]) -> int | None:
    if turn_header is None:
        return None
    if _TURN.fullmatch(turn_header) and 1 <= int(turn_header) <= MAX_TURN:
        return int(turn_header)
    notes.append(f"ignored {CONVERSATION_TURN_HEADER}: not an integer from 1 to {MAX_TURN}")
    return None


def conversation_of(header: str | None, turn_header: str | None, raw: dict) -> tuple[Conversation | None, list[str]]:
    """The turn's conversation (None: none given) and the request notes for
    anything ignored (an invalid id, or a turn index without an id)."""
    notes: list[str] = []
    client_turn = _client_turn(turn_header, notes)
    for source, value, name in _sources(header, raw):
        conversation_id = _valid_id(value)
        if conversation_id is not None:
            return Conversation(conversation_id, source, client_turn), notes
        notes.append(f"ignored {name} as a conversation id: not 1 to 128 visible ASCII characters")
    if client_turn is not None:
        notes.append(f"ignored {CONVERSATION_TURN_HEADER}: no conversation id")
    return None, notes


class TurnCounter:
    """Turn index per conversation, for every ingress replica at once.

    It lives in the routing state (the ``LatencyTracker`` actor), which sees
    every turn's plan from every replica in order: a count kept per replica
    would restart on each replica, and deriving it from the history length
    breaks when a client trims or summarises its history. Bounded:
    ``max_conversations`` entries (least recently active evicted first),
    each forgotten ``idle_ttl_s`` seconds after its latest turn; a
    conversation forgotten and resumed counts from 1 again.
    """

    def __init__(self, *, max_conversations: int, idle_ttl_s: float, clock: Callable[[], float]):
        self._counts: TtlTable[int] = TtlTable(ttl_s=idle_ttl_s, max_entries=max_conversations)
        self._clock = clock

    def __len__(self) -> int:
        return len(self._counts)

    def carried(self, *, max_conversations: int, idle_ttl_s: float) -> "TurnCounter":
        """A counter with these bounds that goes on from this one's counts
        (a redeploy: conversations keep their turn numbers)."""
        counter = TurnCounter(max_conversations=max_conversations, idle_ttl_s=idle_ttl_s, clock=self._clock)
        counter._counts = self._counts.carried(ttl_s=idle_ttl_s, max_entries=max_conversations, now_s=self._clock())
        return counter

    def next_turn(self, key: ConversationKey, client_turn: int | None = None) -> int:
        """This turn's index: the client's if given (later counted turns
        follow on from it), else one more than the last."""
        now_s = self._clock()
        turn = client_turn if client_turn is not None else (self._counts.get(key, now_s) or 0) + 1
        self._counts.put(key, turn, now_s)
        return turn
