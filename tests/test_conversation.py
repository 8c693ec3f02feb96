"""Conversation ids from a request, the tracker's turn counter and the
bounded TTL table under both: pure, fake clock."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.config import parse_config
from router.conversation import Conversation, TurnCounter, conversation_of
from router.routing_state import RoutingState
from router.simulation import ManualClock
from router.ttl_table import TtlTable

# -- which conversation -------------------------------------------------------


def test_header_wins_over_metadata_and_user():
    raw = {"metadata": {"conversation_id": "meta-1"}, "user": "caller-7"}
    assert conversation_of("hdr-1", None, raw) == (Conversation("hdr-1", "header"), [])
    assert conversation_of(None, None, raw) == (Conversation("meta-1", "metadata"), [])
    assert conversation_of(None, None, {"user": "caller-7"}) == (Conversation("caller-7", "user"), [])
    assert conversation_of(None, None, {}) == (None, [])


@pytest.mark.parametrize("bad", ["", "x" * 129, "has space", "tab\there", "caf\u00e9", "\u200b"])
def test_an_invalid_id_is_ignored_with_a_note_and_the_next_source_used(bad):
    conversation, notes = conversation_of(bad, None, {"user": "caller-7"})
    assert conversation == Conversation("caller-7", "user")
    assert notes == ["ignored x-nemo-conversation-id as a conversation id: not 1 to 128 visible ASCII characters"]


@pytest.mark.parametrize("value", [7, None, ["a"], {"a": 1}, "x" * 200])
def test_a_non_string_or_long_body_id_is_never_used(value):
    conversation, notes = conversation_of(None, None, {"metadata": {"conversation_id": value}, "user": value})
    assert conversation is None and len(notes) == 2


def test_metadata_that_is_not_an_object_is_not_a_source():
    assert conversation_of(None, None, {"metadata": "conv"}) == (None, [])


def test_the_longest_valid_id_is_kept_whole():
    assert conversation_of("~" * 128, None, {})[0].id == "~" * 128


@pytest.mark.parametrize("turn, expected", [("1", 1), ("42", 42), ("1000000", 1_000_000)])
def test_client_turn_index(turn, expected):
    assert conversation_of("c", turn, {}) == (Conversation("c", "header", expected), [])


@pytest.mark.parametrize("turn", ["0", "-1", "1.5", "1000001", "", "one", "99999999"])
def test_a_bad_client_turn_index_is_ignored_with_a_note(turn):
    conversation, notes = conversation_of("c", turn, {})
    assert conversation == Conversation("c", "header", None)
    assert notes and "x-nemo-conversation-turn" in notes[0]


def test_a_turn_index_without_an_id_is_noted():
    assert conversation_of(None, "3", {}) == (None, ["ignored x-nemo-conversation-turn: no conversation id"])


@given(header=st.one_of(st.none(), st.text(max_size=140)), user=st.one_of(st.none(), st.text(max_size=140), st.integers()))
def test_any_chosen_id_is_bounded_visible_ascii(header, user):
    conversation, _ = conversation_of(header, None, {"user": user})
    if conversation is not None:
        assert 1 <= len(conversation.id) <= 128
        assert all(0x21 <= ord(ch) <= 0x7E for ch in conversation.id)


# -- counting turns -----------------------------------------------------------


def counter(max_conversations=10, idle_ttl_s=60.0):
    clock = ManualClock(0.0)
    return TurnCounter(max_conversations=max_conversations, idle_ttl_s=idle_ttl_s, clock=clock), clock


def test_turns_count_from_one_per_key_and_conversation():
    turns, _ = counter()
    assert [turns.next_turn(("k", "a")) for _ in range(3)] == [1, 2, 3]
    assert turns.next_turn(("k", "b")) == 1
    assert turns.next_turn(("other-key", "a")) == 1  # another key's conversation "a"


def test_a_client_turn_index_is_taken_and_counting_follows_on():
    turns, _ = counter()
    assert turns.next_turn(("k", "a"), client_turn=7) == 7
    assert turns.next_turn(("k", "a")) == 8


def test_an_idle_conversation_is_forgotten_after_its_ttl():
    turns, clock = counter(idle_ttl_s=60)
    turns.next_turn(("k", "a"))
    clock.advance(59)
    assert turns.next_turn(("k", "a")) == 2  # the TTL counts from the latest turn
    clock.advance(60)
    assert turns.next_turn(("k", "a")) == 1 and len(turns) == 1


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.floats(0, 20)), max_size=200))
def test_the_counter_never_holds_more_than_its_bound(events):
    turns, clock = counter(max_conversations=8, idle_ttl_s=30)
    for conversation, wait_s in events:
        clock.advance(wait_s)
        turns.next_turn((None, str(conversation)))
        assert len(turns) <= 8


def test_the_table_expires_by_write_time_and_evicts_the_oldest():
    table = TtlTable(ttl_s=10, max_entries=2)
    table.put("a", 1, 0.0)
    table.put("b", 2, 1.0)
    table.put("c", 3, 2.0)  # over the bound: "a" goes
    assert table.get("a", 2.0) is None and table.get("b", 2.0) == 2
    assert table.get("b", 11.0) is None and table.get("c", 11.0) == 3
    assert table.pop("c") == 3 and len(table) == 0


def test_the_router_counts_turns_in_the_routing_state_it_shares():
    config = parse_config(
        {"model_groups": {"g": {"endpoints": [{"name": "e", "base_url": "http://sim/v1", "model": "m"}]}},
         "conversations": {"max_tracked": 5, "idle_ttl_s": 30}}
    )
    state = RoutingState(config, clock=ManualClock(0.0), rng=random.Random(0))
    plans = [state.plan("g", lease=f"t{i}", conversation=("k", "call-1", None)) for i in range(3)]
    assert [p.conversation_turn for p in plans] == [1, 2, 3]
    assert state.plan("g", lease="t9").conversation_turn is None
    assert state.plan("g", conversation=("k", "call-1", 10)).conversation_turn == 10
