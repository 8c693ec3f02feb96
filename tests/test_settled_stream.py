"""A metered key's streamed turn tells the ingress what it cost before the
client gets ``[DONE]``: a client that hangs up the moment it has ``[DONE]``
(as SDKs may) must not cancel the ingress before it has charged the turn.
Pure: the caller's settling over a stand-in turn stream."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from router.sse import DONE_EVENT
from router.turn import TurnHead, TurnSettled
from router.turn.settle import settled_stream

HEAD = TurnHead("e", "openai", "m", 0.0, 0.01)
CONTENT = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'


def collect(items, cost):
    async def stream():
        for item in items:
            yield item

    async def run():
        return [item async for item in settled_stream(stream(), lambda: cost)]

    return asyncio.run(run())


def test_the_cost_comes_before_done():
    assert collect([HEAD, CONTENT, DONE_EVENT], 0.002) == [HEAD, CONTENT, TurnSettled(0.002), DONE_EVENT]
    # [DONE] at the end of a coalesced piece (upstream bytes forwarded as they came), in CRLF too.
    tail = CONTENT + b"data: [DONE]\r\n\r\n"
    assert collect([HEAD, tail], 0.002) == [HEAD, TurnSettled(0.002), tail]


def test_an_unpriced_turn_or_one_without_done_is_as_it_was():
    assert collect([HEAD, CONTENT, DONE_EVENT], None) == [HEAD, CONTENT, DONE_EVENT]
    assert collect([HEAD, CONTENT], 0.002) == [HEAD, CONTENT, TurnSettled(0.002)]


@given(st.lists(st.sampled_from([CONTENT, b": keep-alive\n\n"]), max_size=6), st.booleans())
def test_nothing_is_lost_or_reordered_but_the_cost_and_done(pieces, done):
    items = [HEAD, *pieces] + ([DONE_EVENT] if done else [])
    out = collect(items, 0.5)
    assert [i for i in out if type(i) is not TurnSettled] == items
    assert out.index(TurnSettled(0.5)) == len(out) - (2 if done else 1)
