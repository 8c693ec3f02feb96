"""A caller lost after the client already has the whole streamed turn
(``data: [DONE]`` forwarded, the generator's end not yet arrived): found
by tests/test_e2e_multinode.py, where a node loss caught a turn at that
instant. The turn is complete: nothing after [DONE], and no second record
(the ingress used to send an error event after [DONE] and write a
``TurnInterrupted`` record beside the caller's ``ok`` one). The ingress's
relay, driven directly with a fake generator: no Ray."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from ray.exceptions import RayActorError

from deployments.ingress import Ingress
from router.sse import DONE_EVENT, encode_json
from router.turn import TurnHead, TurnRequest

CHUNK = {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "w1 w2"}}]}


class LostAfter:
    """Yields ``pieces``, then fails as a lost caller's stream does."""

    def __init__(self, pieces):
        self.pieces = list(pieces)

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.pieces:
            return self.pieces.pop(0)
        raise RayActorError()

    def cancel(self):
        pass


class Guard:
    def __init__(self):
        self.closed = self.settled = False

    def close(self):
        self.closed = True

    def settle(self):
        self.settled = True


def relay(pieces, next_stream=()):
    records, streams = [], []

    def stream(turn):
        streams.append(turn)
        return LostAfter(next_stream)

    ingress = SimpleNamespace(
        _resume_bytes=1 << 20, _responding=set(), _spend=SimpleNamespace(charge=lambda *a: None),
        _dispatch=SimpleNamespace(record=records.append, stream=stream),
        _guard=lambda turn, generator=None: Guard(),
    )
    turn = TurnRequest("req-1", "g", ("e",), 1, {"model": "g", "messages": []}, True, False)
    head = TurnHead("e", "openai", "m", 0.0, 0.01)
    guard = Guard()

    async def run():
        return [piece async for piece in Ingress._relay(ingress, turn, head, LostAfter(pieces), guard)]

    return b"".join(asyncio.run(run())), records, streams, guard


def test_a_caller_lost_after_done_leaves_the_turn_as_sent():
    body, records, streams, guard = relay([encode_json(CHUNK), DONE_EVENT])
    assert body == encode_json(CHUNK) + DONE_EVENT  # nothing after [DONE]
    assert records == [] and streams == []  # no second record, no carry-over
    assert guard.closed  # what the lost caller held is released


def test_done_in_the_same_piece_as_the_last_words_counts_too():
    body, records, _, _ = relay([encode_json(CHUNK) + DONE_EVENT])
    assert body.count(b"[DONE]") == 1 and b"error" not in body and records == []


def test_a_caller_lost_before_done_still_carries_the_turn_over():
    body, records, streams, _ = relay([encode_json(CHUNK)], next_stream=[DONE_EVENT])
    assert len(streams) == 1 and streams[0].resume is not None and streams[0].resume.sent_text == "w1 w2"
