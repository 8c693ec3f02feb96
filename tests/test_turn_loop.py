"""The turn loop (``router.turn.TurnRunner``) over the in-memory transport:
no Ray, no sockets. Every path of a turn (served, fallback, first-token
deadline, exhausted plan, request fault, mid-stream continuation, a client
leaving, a hedge race) is checked for what the client receives, what the
record says, and that the leases balance: the runner's reported events go
into a real ``RoutingState``, which must count nothing in flight once the
turn has ended.

Timeouts here are real event-loop time (the runner bounds its waits with
``asyncio.timeout``), kept to a few tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from router.config import parse_config
from router.errors import UpstreamDisconnected
from router.outcome import AttemptOutcome, AttemptStarted, OutcomeKind
from router.routing_state import RoutingState
from router.simulation import ManualClock
from router.sse import DONE_DATA, DONE_EVENT, SSEDecoder, encode_json
from router.turn import TurnFailure, TurnHead, TurnRequest, TurnRunner, new_turn_id
from router.turn.memory_transport import MemoryTransport, Reply, SentRequest, openai_sse

WORDS = [f"w{i}" for i in range(1, 21)]
FULL_TEXT = " ".join(WORDS)
BODY = {"model": "g", "messages": [{"role": "user", "content": "count to twenty"}]}
MALFORMED = b"data: {not json\n\n"
CONTEXT_TOO_LONG = json.dumps({"error": {
    "message": "This model's maximum context length is 8192 tokens.",
    "type": "invalid_request_error", "code": "context_length_exceeded",
}}).encode()


def group(*names: str, first_token_s: float = 5.0, **extra) -> dict:
    endpoints = [{"name": n, "base_url": "http://mem/v1", "model": "m"} for n in names]
    return {"strategy": "ordered", "timeouts": {"first_token_s": first_token_s, "total_s": 10},
            "endpoints": endpoints, **extra}


class Turns:
    """A runner wired to a real ``RoutingState``: every event the runner
    reports is fed to it at once, so a test can read the leases mid-turn."""

    def __init__(self, groups: dict, handler):
        self.config = parse_config({"model_groups": groups})
        self.state = RoutingState(self.config, clock=ManualClock(100.0), rng=random.Random(0))
        self.transport = MemoryTransport(handler)
        self.events: list = []
        self.records: list = []
        self.runner = TurnRunner(self.config, self.transport, self._report, self.records.append)

    def _report(self, events: list) -> None:
        self.events.extend(events)
        self.state.report(events)

    def request(self, group_name: str, *, reserved: bool, stream: bool = True, include_usage: bool = False) -> TurnRequest:
        turn_id = new_turn_id()
        plan = self.state.plan(group_name, lease=turn_id if reserved else None, stream=stream)
        return TurnRequest(
            f"req-{turn_id[:8]}", group_name, plan.endpoints, plan.max_attempts, BODY,
            stream=stream, include_usage=include_usage, hedge_after_s=plan.hedge_after_s,
            request_error_endpoints=plan.request_error_endpoints, reserved=reserved, turn_id=turn_id,
        )

    def stream(self, request: TurnRequest) -> list:
        async def collect():
            return [item async for item in self.runner.stream(request)]

        return asyncio.run(collect())

    @property
    def record(self):
        (record,) = self.records  # emitted exactly once
        return record

    def kinds(self) -> list[tuple[str, OutcomeKind]]:
        return [(o.endpoint, o.kind) for o in self.record.outcomes]

    def sent_to(self) -> list[str]:
        return [r.endpoint for r in self.transport.sent]

    def assert_balanced(self) -> None:
        assert self.transport.open_responses == 0
        assert self.state.in_flight() == 0
        assert all(s["in_flight"] == 0 for s in self.state.snapshot().values())
        reported = [e for e in self.events if isinstance(e, AttemptOutcome)]
        assert reported == self.record.outcomes  # every attempt reported once, as recorded


@pytest.fixture(params=[True, False], ids=["reserved", "unreserved"])
def reserved(request) -> bool:
    return request.param


def by_endpoint(**replies):
    """A handler: endpoint name (dashes written as underscores) -> a
    ``Reply``, or a function of the request."""

    def handle(request: SentRequest) -> Reply:
        reply = replies[request.endpoint.replace("-", "_")]
        return reply(request) if callable(reply) else reply

    return handle


def continuer(repeat: int = 0):
    """An upstream that continues the text after the partial reply it was
    sent (the trailing assistant message), restating its last ``repeat`` words."""

    def handle(request: SentRequest) -> Reply:
        sent = request.body["messages"][-1]["content"].split()
        return Reply(200, openai_sse(WORDS[len(sent) - repeat:], chunk_id="chatcmpl-other"))

    return handle


def client_bytes(items: list) -> bytes:
    return b"".join(item for item in items if isinstance(item, bytes))


def client_text(items: list) -> str:
    text = ""
    for event in SSEDecoder().feed(client_bytes(items)):
        if event.data is None or event.data == DONE_DATA:
            continue
        for choice in json.loads(event.data).get("choices") or ():
            text += (choice.get("delta") or {}).get("content") or ""
    return text


def continuation_sent_text(turns: Turns) -> list[str]:
    """The partial reply each continuation request carried."""
    return [r.body["messages"][-1]["content"] for r in turns.transport.sent if r.body["messages"][-1]["role"] == "assistant"]


def started_indexes(turns: Turns) -> list[int]:
    return [e.lease[1] for e in turns.events if isinstance(e, AttemptStarted)]


# -- served ----------------------------------------------------------------


@pytest.mark.parametrize("include_usage", [True, False])
def test_a_streamed_turn_forwards_the_upstream_events_unchanged(reserved, include_usage):
    events = openai_sse(WORDS)
    turns = Turns({"g": group("a", "b")}, by_endpoint(a=Reply(200, events)))
    items = turns.stream(turns.request("g", reserved=reserved, include_usage=include_usage))
    assert isinstance(items[0], TurnHead) and items[0].endpoint == "a"
    assert not any(isinstance(item, (TurnHead, TurnFailure)) for item in items[1:])
    # The usage-only chunk the router asked for on the client's behalf is the
    # one event dropped; one the client asked for gains the router's note.
    usage_chunk = next(e for e in events if b'"choices":[]' in e)
    noted = encode_json({**json.loads(usage_chunk[len(b"data: "):]), "nemo": {"endpoint": "a", "cost_usd": None}})
    expected = [noted if e is usage_chunk else e for e in events] if include_usage else [e for e in events if e is not usage_chunk]
    assert client_bytes(items) == b"".join(expected)
    assert turns.record.status == "ok" and turns.record.text == FULL_TEXT
    assert turns.kinds() == [("a", OutcomeKind.OK)]
    assert started_indexes(turns) == ([] if reserved else [0])
    turns.assert_balanced()


def completion(text: str) -> bytes:
    return json.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "sim-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 20, "total_tokens": 23},
    }).encode()


def test_a_non_streamed_turn_returns_the_upstream_body(reserved):
    body = completion(FULL_TEXT)
    turns = Turns({"g": group("a", "b")}, by_endpoint(a=Reply(200, [body[:10], body[10:]])))
    head, payload = asyncio.run(turns.runner.complete(turns.request("g", reserved=reserved, stream=False)))
    assert head.endpoint == "a" and payload == body
    assert turns.record.status == "ok" and turns.record.text == FULL_TEXT
    assert turns.record.usage.completion_tokens == 20
    assert turns.kinds() == [("a", OutcomeKind.OK)]
    assert [r.stream for r in turns.transport.sent] == [False]
    turns.assert_balanced()


def test_a_non_streamed_turn_falls_back_after_a_503(reserved):
    turns = Turns({"g": group("a", "b")}, by_endpoint(a=Reply(503, [b"busy"]), b=Reply(200, [completion("hi")])))
    head, _ = asyncio.run(turns.runner.complete(turns.request("g", reserved=reserved, stream=False)))
    assert head.endpoint == "b"
    assert turns.kinds() == [("a", OutcomeKind.UPSTREAM_ERROR), ("b", OutcomeKind.OK)]
    turns.assert_balanced()


# -- before the first token -------------------------------------------------


def test_a_503_before_the_first_token_falls_back(reserved):
    turns = Turns({"g": group("a", "b")}, by_endpoint(a=Reply(503, [b'{"error":{"message":"busy"}}'], retry_after="2"),
                                                     b=Reply(200, openai_sse(WORDS))))
    items = turns.stream(turns.request("g", reserved=reserved))
    assert items[0].endpoint == "b" and client_text(items) == FULL_TEXT
    assert turns.kinds() == [("a", OutcomeKind.UPSTREAM_ERROR), ("b", OutcomeKind.OK)]
    assert turns.record.outcomes[0].kind.value == "upstream_5xx"
    assert turns.record.outcomes[0].http_status == 503 and turns.record.outcomes[0].retry_after_s == 2.0
    assert started_indexes(turns) == ([1] if reserved else [0, 1])
    assert turns.record.status == "ok"
    turns.assert_balanced()


def test_an_upstream_that_hangs_runs_out_its_first_token_deadline(reserved):
    turns = Turns({"g": group("a", "b", first_token_s=0.05)},
                  by_endpoint(a=Reply(hang=True), b=Reply(200, openai_sse(WORDS))))
    items = turns.stream(turns.request("g", reserved=reserved))
    assert items[0].endpoint == "b" and client_text(items) == FULL_TEXT
    assert turns.kinds() == [("a", OutcomeKind.TIMEOUT), ("b", OutcomeKind.OK)]
    turns.assert_balanced()


def test_when_every_endpoint_fails_the_client_gets_one_openai_error(reserved):
    turns = Turns({"g": group("a", "b")}, by_endpoint(a=Reply(503), b=Reply(500)))
    items = turns.stream(turns.request("g", reserved=reserved))
    (failure,) = items
    assert isinstance(failure, TurnFailure) and failure.http_status == 502
    error = failure.error["error"]
    assert error["type"] == "upstream_error" and error["code"] == "all_upstreams_failed"
    assert "a: UpstreamStatusError" in error["message"] and "b: UpstreamStatusError" in error["message"]
    assert set(error) == {"message", "type", "param", "code"}
    assert turns.record.status == "error" and turns.record.http_status == 502
    assert turns.kinds() == [("a", OutcomeKind.UPSTREAM_ERROR), ("b", OutcomeKind.UPSTREAM_ERROR)]
    turns.assert_balanced()


def test_when_every_endpoint_times_out_the_failure_is_a_504(reserved):
    turns = Turns({"g": group("a", "b", first_token_s=0.03)}, by_endpoint(a=Reply(hang=True), b=Reply(hang=True)))
    (failure,) = turns.stream(turns.request("g", reserved=reserved))
    assert failure.http_status == 504 and failure.error["error"]["code"] == "upstream_timeout"
    turns.assert_balanced()


def test_a_request_fault_skips_the_chain_and_moves_to_the_declared_group(reserved):
    groups = {"small": group("small-1", "small-2", request_error_fallback="large"), "large": group("large")}
    turns = Turns(groups, by_endpoint(small_1=Reply(400, [CONTEXT_TOO_LONG]), small_2=Reply(400, [CONTEXT_TOO_LONG]),
                                      large=Reply(200, openai_sse(WORDS))))
    items = turns.stream(turns.request("small", reserved=reserved))
    assert items[0].endpoint == "large" and client_text(items) == FULL_TEXT
    assert turns.sent_to() == ["small-1", "large"]  # small-2 would refuse it too: never asked
    assert turns.kinds() == [("small-1", OutcomeKind.REQUEST_REJECTED), ("large", OutcomeKind.OK)]
    turns.assert_balanced()


def test_a_request_fault_without_a_declared_group_ends_the_turn_with_its_4xx(reserved):
    turns = Turns({"small": group("small-1", "small-2")},
                  by_endpoint(small_1=Reply(400, [CONTEXT_TOO_LONG]), small_2=Reply(200, openai_sse(WORDS))))
    (failure,) = turns.stream(turns.request("small", reserved=reserved))
    assert failure.http_status == 400
    assert failure.error["error"]["type"] == "invalid_request_error"
    # The router's own words name the problem; the upstream's text stays in the record.
    assert failure.error["error"]["code"] == "context_length_exceeded"
    assert "maximum context length" not in failure.error["error"]["message"]
    assert turns.sent_to() == ["small-1"]
    assert turns.record.http_status == 400
    assert "maximum context length" in turns.record.error_detail
    turns.assert_balanced()


# -- after the first token --------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 12])
@pytest.mark.parametrize("repeat", [0, 2])
def test_a_mid_stream_disconnect_continues_on_the_next_endpoint(reserved, k, repeat):
    cut = [*openai_sse(WORDS)[: 1 + k], UpstreamDisconnected("connection reset", endpoint="a")]
    turns = Turns({"g": group("a", "b")}, by_endpoint(a=Reply(200, cut), b=continuer(repeat=min(repeat, k))))
    items = turns.stream(turns.request("g", reserved=reserved))
    assert [type(i) for i in items].count(TurnHead) == 1 and items[0].endpoint == "a"
    assert client_text(items) == FULL_TEXT  # no gap, no repeat
    assert client_bytes(items).endswith(DONE_EVENT) and client_bytes(items).count(DONE_EVENT) == 1
    assert continuation_sent_text(turns) == [" ".join(WORDS[:k])]
    assert turns.kinds() == [("a", OutcomeKind.DISCONNECTED), ("b", OutcomeKind.OK)]
    assert turns.record.status == "ok" and turns.record.text == FULL_TEXT
    turns.assert_balanced()


def malformed_in_one_read(k: int, together_with_first: bool) -> list[bytes]:
    """The stream of ``WORDS`` broken by a malformed event after w(k): one
    network read carries w2..w(k) (with the preamble and w1 too, if
    ``together_with_first``), the malformed event, and w(k+1), which the
    continuation must supply instead."""
    events = openai_sse(WORDS)
    failing_read = b"".join(events[2 : 1 + k]) + MALFORMED + events[1 + k]
    if together_with_first:
        return [events[0] + events[1] + failing_read, *events[2 + k:]]
    return [events[0] + events[1], failing_read, *events[2 + k:]]


@pytest.mark.parametrize("k", [1, 3, 6])
@pytest.mark.parametrize("together_with_first", [True, False], ids=["first-read", "later-read"])
@pytest.mark.parametrize("repeat", [0, 2])
def test_words_in_the_read_that_carries_a_malformed_event_are_forwarded_once(reserved, k, together_with_first, repeat):
    pieces = malformed_in_one_read(k, together_with_first)
    turns = Turns({"g": group("a", "b")}, by_endpoint(a=Reply(200, pieces), b=continuer(repeat=min(repeat, k))))
    items = turns.stream(turns.request("g", reserved=reserved))
    assert items[0].endpoint == "a"
    # The k good words of the failing read reached the client, and the
    # continuation picked up right after them.
    assert continuation_sent_text(turns) == [" ".join(WORDS[:k])]
    assert client_text(items) == FULL_TEXT
    assert turns.kinds() == [("a", OutcomeKind.PROTOCOL_ERROR), ("b", OutcomeKind.OK)]
    turns.assert_balanced()


def test_with_midstream_error_a_broken_stream_ends_with_an_error_event(reserved):
    cut = [*openai_sse(WORDS)[:4], UpstreamDisconnected("connection reset", endpoint="a")]
    turns = Turns({"g": group("a", "b", midstream="error")}, by_endpoint(a=Reply(200, cut), b=continuer()))
    items = turns.stream(turns.request("g", reserved=reserved))
    assert client_text(items) == "w1 w2 w3"
    last_events = SSEDecoder().feed(client_bytes(items))[-2:]
    assert json.loads(last_events[0].data)["error"]["code"] == "upstream_disconnected"
    assert last_events[1].raw == DONE_EVENT
    assert turns.sent_to() == ["a"]
    assert turns.record.error_type == "UpstreamDisconnected"
    turns.assert_balanced()


def test_a_continuation_that_fails_too_ends_the_stream_cleanly(reserved):
    cut = [*openai_sse(WORDS)[:4], UpstreamDisconnected("connection reset", endpoint="a")]
    turns = Turns({"g": group("a", "b")}, by_endpoint(a=Reply(200, cut), b=Reply(503)))
    items = turns.stream(turns.request("g", reserved=reserved))
    assert client_text(items) == "w1 w2 w3" and client_bytes(items).endswith(DONE_EVENT)
    assert turns.kinds() == [("a", OutcomeKind.DISCONNECTED), ("b", OutcomeKind.UPSTREAM_ERROR)]
    turns.assert_balanced()


# -- a client that leaves ---------------------------------------------------


async def until(predicate, timeout_s: float = 2.0) -> None:
    """Let the turn run until ``predicate()`` holds (the hedge delay is real loop time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < deadline, "the turn never got there"
        await asyncio.sleep(0.002)


def leave(turns: Turns, request: TurnRequest, there, check_mid_turn=lambda: None) -> list:
    """Read the turn in a task and cancel it (the client leaves) once
    ``there(items_so_far)`` holds."""
    items: list = []

    async def read():
        async for item in turns.runner.stream(request):
            items.append(item)

    async def run():
        task = asyncio.ensure_future(read())
        await until(lambda: there(items))
        check_mid_turn()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    return items


def test_a_client_leaving_before_the_first_token_closes_the_upstream(reserved):
    turns = Turns({"g": group("a", "b")}, by_endpoint(a=Reply(hang=True)))
    request = turns.request("g", reserved=reserved)

    def counted():
        assert turns.state.in_flight() == 1

    items = leave(turns, request, lambda _: turns.transport.open_responses == 1, counted)
    assert items == []
    assert turns.record.status == "cancelled" and turns.record.http_status == 499
    assert turns.kinds() == [("a", OutcomeKind.CANCELLED)]
    turns.assert_balanced()


def test_a_client_leaving_mid_stream_closes_the_upstream(reserved):
    events = openai_sse(WORDS)
    turns = Turns({"g": group("a", "b")}, by_endpoint(a=Reply(200, [*events[:4], 30.0, *events[4:]])))
    items = leave(turns, turns.request("g", reserved=reserved), lambda items: client_text(items) == "w1 w2 w3")
    assert isinstance(items[0], TurnHead)
    assert turns.record.status == "cancelled"
    assert turns.kinds() == [("a", OutcomeKind.CANCELLED)]
    assert turns.sent_to() == ["a"]  # a client that left is not carried over
    turns.assert_balanced()


def test_a_client_closing_the_stream_mid_stream_is_recorded_after_the_upstream_closes(reserved):
    """The other way a reader leaves an async generator: ``aclose()`` (what
    ``async for ... break`` or a dropped reference leads to). ``stream``
    handles ``GeneratorExit`` like a cancel, so the record it emits must
    already hold the served attempt, its upstream closed and its lease given
    back, just as after a task cancel."""
    events = openai_sse(WORDS)
    at_emit: dict = {}
    turns = Turns({"g": group("a", "b")}, by_endpoint(a=Reply(200, [*events[:4], 30.0, *events[4:]])))

    def emit(turn):
        turns.records.append(turn)
        at_emit.update(open=turns.transport.open_responses, in_flight=turns.state.in_flight(), attempts=len(turn.outcomes))

    turns.runner = TurnRunner(turns.config, turns.transport, turns._report, emit)
    request = turns.request("g", reserved=reserved)

    async def read_then_close():
        stream = turns.runner.stream(request)
        async for item in stream:
            if isinstance(item, bytes):
                break
        await stream.aclose()
        snapshot = dict(at_emit)
        await asyncio.sleep(0.01)  # let a finalizer-scheduled close run, so the leases balance below
        return snapshot

    at_close = asyncio.run(read_then_close())
    assert turns.record.status == "cancelled"
    assert at_close == {"open": 0, "in_flight": 0, "attempts": 1}
    turns.assert_balanced()


def hedged(*names: str, **extra) -> dict:
    return group(*names, hedge={"delay_s": 0.01, "min_delay_s": 0.01, "max_share": 1.0}, **extra)


def test_a_client_leaving_during_a_hedge_race_closes_both_racers(reserved):
    turns = Turns({"g": hedged("a", "b")}, by_endpoint(a=Reply(hang=True), b=Reply(hang=True)))
    request = turns.request("g", reserved=reserved)
    assert request.hedge_after_s == 0.01

    def both_counted():
        assert turns.state.in_flight() == 2
        assert {n: s["in_flight"] for n, s in turns.state.snapshot().items()} == {"a": 1, "b": 1}

    leave(turns, request, lambda _: turns.transport.open_responses == 2, both_counted)
    assert turns.record.status == "cancelled" and turns.record.hedged
    assert sorted(turns.kinds()) == [("a", OutcomeKind.CANCELLED), ("b", OutcomeKind.CANCELLED)]
    assert started_indexes(turns) == ([1] if reserved else [0, 1])
    turns.assert_balanced()


def test_the_hedge_wins_over_a_hung_first_endpoint(reserved):
    turns = Turns({"g": hedged("a", "b")}, by_endpoint(a=Reply(hang=True), b=Reply(200, openai_sse(WORDS))))
    items = turns.stream(turns.request("g", reserved=reserved))
    assert items[0].endpoint == "b" and client_text(items) == FULL_TEXT
    assert turns.record.hedged and turns.record.status == "ok"
    assert sorted(turns.kinds()) == [("a", OutcomeKind.CANCELLED), ("b", OutcomeKind.OK)]
    loser = next(o for o in turns.record.outcomes if o.endpoint == "a")
    assert loser.ttft_s is not None and loser.ttft_s >= 0.01  # a lower bound of its TTFT
    turns.assert_balanced()
