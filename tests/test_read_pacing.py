"""A client that reads slowly, or not at all (``router.turn.pace``,
``deployments.coalesce``): the runner stops reading upstream while
``limit_bytes`` wait for the reader, so what one turn holds is bounded
whatever the reply's length; a reader that catches up gets the whole reply,
gap-free; a reader that reads nothing until the turn's deadline ends the
turn as ``ClientTooSlow``, its attempt ``cancelled`` (never the endpoint's
fault), its leases released. In-memory transport, no Ray.
"""

from __future__ import annotations

import asyncio
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from deployments.coalesce import CoalescingStream
from router.outcome import AttemptOutcome, OutcomeKind
from router.sse import DONE_DATA, SSEDecoder
from router.turn import TurnHead
from router.turn.memory_transport import Reply, openai_sse
from router.turn.pace import ReadPacer
from test_turn_loop import Turns, group

LONG = [f"w{i}" for i in range(1, 2001)]


class CountedPieces(list):
    """A reply's pieces that count how many the transport has read."""

    read = 0

    def __iter__(self):
        for piece in super().__iter__():
            self.read += 1
            yield piece


def _pieces_as_sent(turns: Turns, pieces: list[bytes]) -> list[bytes]:
    """The pieces the runner hands on: upstream's, with the preamble joined
    to the first content piece (one piece, as the client gets it)."""
    return [pieces[0] + pieces[1], *pieces[2:]]


def _text(pieces: list[bytes]) -> str:
    decoder, words = SSEDecoder(), []
    for piece in pieces:
        for event in decoder.feed(piece):
            if event.data and event.data != DONE_DATA:
                chunk = json.loads(event.data)
                for choice in chunk.get("choices", []):
                    words.append(choice.get("delta", {}).get("content") or "")
    return "".join(words)


def _paced(turns: Turns, limit_bytes: int, *, reserved: bool = True) -> tuple[CoalescingStream, ReadPacer]:
    pacer = ReadPacer(limit_bytes)
    request = turns.request("g", reserved=reserved)
    return CoalescingStream(turns.runner.stream(request, pacer), pacer), pacer


async def _until(predicate, timeout_s: float = 2.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.005)


def test_a_reader_that_stops_reading_stops_the_upstream_reads_and_gets_everything_when_it_resumes():
    pieces = CountedPieces(openai_sse(LONG))
    turns = Turns({"g": group("a")}, lambda _: Reply(pieces=pieces))
    limit = 4096

    async def run():
        stream, pacer = _paced(turns, limit)
        received = [await stream.__anext__(), await stream.__anext__()]  # the head and the first piece
        await _until(lambda: pacer.full)
        read_while_stalled = pieces.read
        await asyncio.sleep(0.05)  # the runner must stay paused: nothing more is read upstream
        assert pieces.read == read_while_stalled < len(pieces) // 4
        assert pacer.buffered_bytes < limit + max(map(len, pieces))
        received += [item async for item in stream]
        return received

    received = asyncio.run(run())
    assert isinstance(received[0], TurnHead)
    assert _text(received[1:]) == " ".join(LONG)
    (record,) = turns.records
    assert record.status == "ok"
    assert any("read slowly" in note for note in record.notes)


def test_a_reader_that_reads_nothing_until_the_deadline_ends_the_turn_as_its_own_doing():
    groups = {"g": {**group("a", "b"), "timeouts": {"first_token_s": 0.2, "total_s": 0.3}}}
    turns = Turns(groups, lambda _: Reply(pieces=openai_sse(LONG)))

    async def run():
        stream, pacer = _paced(turns, 2048)
        await stream.__anext__()
        await _until(lambda: stream.task.done(), timeout_s=3.0)  # the turn ended without the reader
        return [item async for item in stream]

    rest = asyncio.run(run())
    decoder = SSEDecoder()
    events = [e.data for item in rest for e in decoder.feed(item)]
    assert events[-1] == DONE_DATA
    assert json.loads(events[-2])["error"]["code"] == "client_read_timeout"
    (record,) = turns.records
    assert record.error_type == "ClientTooSlow"
    assert [e.kind for e in turns.events if isinstance(e, AttemptOutcome)] == [OutcomeKind.CANCELLED]
    assert [s.endpoint for s in turns.transport.sent] == ["a"]  # not continued elsewhere
    assert turns.state.in_flight() == 0


def test_a_stop_reaches_a_turn_paused_for_its_reader():
    turns = Turns({"g": group("a")}, lambda _: Reply(pieces=openai_sse(LONG)))

    async def run():
        stream, pacer = _paced(turns, 2048)
        await stream.__anext__()
        await _until(lambda: pacer.full)
        turns.runner.live.stop_all()
        await _until(lambda: stream.task.done())
        return [item async for item in stream]

    rest = asyncio.run(run())
    assert b"router_stopping" in b"".join(rest)
    assert turns.records[0].error_type == "RouterStopping"


@settings(max_examples=40, deadline=None)
@given(
    limit=st.integers(256, 8192),
    reads=st.lists(st.tuples(st.integers(0, 3), st.floats(0, 0.002)), min_size=1, max_size=30),
)
def test_what_waits_for_the_reader_stays_bounded_and_the_text_gap_free(limit, reads):
    """Whatever the reader's rhythm (bursts of reads, pauses), the bytes
    waiting never exceed the limit by more than one piece, and the reader
    ends up with the whole reply, in order."""
    words = LONG[:300]
    pieces = openai_sse(words)
    turns = Turns({"g": group("a")}, lambda _: Reply(pieces=pieces))

    async def run():
        stream, pacer = _paced(turns, limit)
        received, peak = [], 0
        for burst, pause_s in reads:
            for _ in range(burst):
                peak = max(peak, pacer.buffered_bytes)
                try:
                    received.append(await stream.__anext__())
                except StopAsyncIteration:
                    return received, peak
            await asyncio.sleep(pause_s)
        async for item in stream:
            peak = max(peak, pacer.buffered_bytes)
            received.append(item)
        return received, peak

    received, peak = asyncio.run(run())
    biggest = max(len(p) for p in _pieces_as_sent(turns, pieces))
    assert peak <= limit + biggest
    assert _text(received[1:]) == " ".join(words)
