"""The seam of a mid-stream continuation: pure."""

from hypothesis import given
from hypothesis import strategies as st

from router.continuation import Seam, continuation_messages


def splice(sent: str, pieces: list[str], lookahead: int = 48) -> str:
    seam = Seam(sent, lookahead)
    return sent + "".join(seam.feed(p) for p in pieces) + seam.flush()


def words(a: int, b: int) -> str:
    return " ".join(f"w{i}" for i in range(a, b + 1))


def test_clean_continuation_passes_through():
    assert splice("w1 w2 w3", [" w4", " w5", " w6"]) == words(1, 6)


def test_continuation_without_leading_space_gets_one():
    assert splice("w1 w2 w3", ["w4", " w5"]) == words(1, 5)


def test_repeated_tail_words_are_dropped():
    assert splice("w1 w2 w3", ["w2 w3", " w4 w5"]) == words(1, 5)
    assert splice("w1 w2 w3", ["w3", " w4"], lookahead=2) == words(1, 4)


def test_short_continuation_is_flushed_at_the_end():
    assert splice("w1 w2", [" w3"]) == words(1, 3)


# Overlaps of up to 5 words (~20 characters) are caught with the lookahead at least that long.
@given(st.integers(1, 30), st.integers(0, 5), st.integers(1, 30), st.integers(24, 60))
def test_numbered_words_splice_gap_free_whatever_the_overlap_and_chunking(cut, overlap, more, lookahead):
    sent = words(1, cut)
    start = max(1, cut + 1 - overlap)
    cont = words(start, cut + more)
    if start == 1 or overlap == 0:
        cont = " " + cont
    pieces = [cont[i : i + 3] for i in range(0, len(cont), 3)]
    assert splice(sent, pieces, lookahead) == words(1, cut + more)


def test_continuation_request_appends_the_partial_reply():
    messages = [{"role": "user", "content": "count"}]
    assert continuation_messages(messages, "w1 w2") == [*messages, {"role": "assistant", "content": "w1 w2"}]
