"""The relays (``router.turn.relay``), property-tested: whatever the words,
wherever a stream breaks and however its bytes are cut into network reads,
what a relay counts as forwarded is exactly what it handed out, and a
continuation spliced on from there is the whole text, once.

Words are distinct: the seam drops words that restate the tail already sent,
so a reply that truly repeats its last word across the seam is, by design,
indistinguishable from an upstream restarting its sentence.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from router.continuation import Seam
from router.sse import DONE_DATA, SSEDecoder
from router.stream_watch import StreamWatch
from router.turn.memory_transport import openai_sse
from router.turn.relay import ContinuationRelay, PassThroughRelay

MALFORMED = b"data: {not json\n\n"
CHUNK_ID = "chatcmpl-first"

word_lists = st.lists(st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8), min_size=1, max_size=30, unique=True)


def reads(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut into network reads at ``cuts`` (positions, any order)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


def broken_stream(words: list[str], k: int, *, chunk_id: str = CHUNK_ID) -> bytes:
    """The stream of ``words`` with a malformed event right after the k-th word."""
    events = openai_sse(words, chunk_id=chunk_id)
    return b"".join(events[: 1 + k]) + MALFORMED + b"".join(events[1 + k:])


def content(data: bytes) -> str:
    """The text a client reads from SSE bytes."""
    text = ""
    for event in SSEDecoder().feed(data):
        if event.data is None or event.data == DONE_DATA:
            continue
        for choice in json.loads(event.data).get("choices") or ():
            text += (choice.get("delta") or {}).get("content") or ""
    return text


def chunk_ids(data: bytes) -> set[str]:
    return {json.loads(e.data)["id"] for e in SSEDecoder().feed(data) if e.data not in (None, DONE_DATA)}


def feed_until_failure(relay, pieces: list[bytes]) -> bytes:
    """Feed read by read, as the turn does, until the relay reports a failure."""
    out = b""
    for piece in pieces:
        out += relay.feed(piece)
        if relay.failure is not None:
            return out
    raise AssertionError("the malformed event was never noticed")


def feed_all(relay, pieces: list[bytes]) -> bytes:
    out = b""
    for piece in pieces:
        out += relay.feed(piece)
        assert relay.failure is None
    return out


def watch() -> StreamWatch:
    return StreamWatch("e", forward_usage=False)


@st.composite
def breaks(draw):
    """Words, where the first stream breaks (after k words), how many sent
    words the continuation restates, and the cut points of both streams."""
    words = draw(word_lists)
    k = draw(st.integers(0, len(words)))
    repeat = draw(st.integers(0, min(3, k)))
    first_cuts = draw(st.lists(st.integers(0, 10_000), max_size=12))
    second_cuts = draw(st.lists(st.integers(0, 10_000), max_size=12))
    return words, k, repeat, first_cuts, second_cuts


@settings(max_examples=200, deadline=None)
@given(breaks())
def test_pass_through_forwards_exactly_the_words_before_the_failure(case):
    words, k, _, first_cuts, _ = case
    relay = PassThroughRelay(watch())
    out = feed_until_failure(relay, reads(broken_stream(words, k), first_cuts))
    expected = " ".join(words[:k])
    assert content(out) == expected
    assert relay.forwarded_text == expected


@settings(max_examples=200, deadline=None)
@given(breaks())
def test_a_continuation_after_a_pass_through_failure_completes_the_text(case):
    words, k, repeat, first_cuts, second_cuts = case
    first = PassThroughRelay(watch())
    feed_until_failure(first, reads(broken_stream(words, k), first_cuts))
    sent = first.forwarded_text
    second = ContinuationRelay(watch(), Seam(sent), CHUNK_ID)
    stream = b"".join(openai_sse(words[k - repeat:], chunk_id="chatcmpl-second"))
    out = feed_all(second, reads(stream, second_cuts))
    assert second.watch.done
    assert content(out) == second.forwarded_text
    assert sent + second.forwarded_text == " ".join(words)
    assert chunk_ids(out) <= {CHUNK_ID}  # the client keeps seeing the first stream's id


@st.composite
def double_breaks(draw):
    """As ``breaks``, with the continuation itself breaking after j of its words."""
    words, k, repeat, first_cuts, second_cuts = draw(breaks())
    j = draw(st.integers(0, len(words) - k + repeat))
    third_cuts = draw(st.lists(st.integers(0, 10_000), max_size=12))
    repeat_again = draw(st.integers(0, 3))
    return words, k, repeat, j, repeat_again, first_cuts, second_cuts, third_cuts


@settings(max_examples=200, deadline=None)
@given(double_breaks())
def test_a_failure_inside_a_continuation_forwards_exactly_what_it_counts(case):
    words, k, repeat, j, repeat_again, first_cuts, second_cuts, third_cuts = case
    first = PassThroughRelay(watch())
    feed_until_failure(first, reads(broken_stream(words, k), first_cuts))
    sent = first.forwarded_text

    second = ContinuationRelay(watch(), Seam(sent), CHUNK_ID)
    out = feed_until_failure(second, reads(broken_stream(words[k - repeat:], j, chunk_id="chatcmpl-second"), second_cuts))
    assert content(out) == second.forwarded_text
    sent += second.forwarded_text
    # Whatever the seam still held is not sent: the client has whole words, in order.
    said = sent.split()
    assert said == words[: len(said)] and " ".join(said) == sent

    third = ContinuationRelay(watch(), Seam(sent), CHUNK_ID)
    restated = min(repeat_again, len(said))
    stream = b"".join(openai_sse(words[len(said) - restated:], chunk_id="chatcmpl-third"))
    out = feed_all(third, reads(stream, third_cuts))
    assert content(out) == third.forwarded_text
    assert sent + third.forwarded_text == " ".join(words)
