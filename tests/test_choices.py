"""Several choices per turn (``n > 1``): pure, no Ray.

Validated at the ingress, planned only on endpoints whose provider returns
several choices (a group mixing providers skips the others; none is a 400
naming ``n``), streamed through with each choice under its index, never
carried over mid-stream, and the turn's text covers every choice.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.config import parse_config
from router.errors import InvalidRequest, NoEligibleEndpoint, UpstreamDisconnected, UpstreamProtocolError
from router.openai_wire import MAX_CHOICES, parse_chat_request
from router.providers import codec_for, max_choices
from router.routing_state import RoutingState, check_eligible
from router.simulation import ManualClock
from router.sse import DONE_DATA, SSEDecoder, SSEEvent, encode_json
from router.stream_watch import StreamWatch
from router.turn import TurnFailure, TurnHead, TurnRequest, TurnRunner, new_turn_id
from router.turn.memory_transport import MemoryTransport, Reply
from router.turn.resume import resume_point

USER = [{"role": "user", "content": "hi"}]


def body(**fields) -> bytes:
    return json.dumps({"model": "g", "messages": USER, **fields}).encode()


# -- the request ---------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, MAX_CHOICES])
def test_n_up_to_openais_limit_is_accepted(n):
    chat, raw = parse_chat_request(body(n=n))
    assert chat.choices == n and raw["n"] == n


@pytest.mark.parametrize("n", [0, MAX_CHOICES + 1, "2", 1.5, True])
def test_a_bad_n_is_a_400_naming_n(n):
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(body(n=n))
    assert info.value.param == "n"


def test_no_n_is_one_choice():
    assert parse_chat_request(body())[0].choices == 1


# -- which providers, and planning ---------------------------------------------


def test_which_providers_return_several_choices():
    assert max_choices("openai") == MAX_CHOICES
    assert max_choices("gemini") == 8  # candidateCount
    assert max_choices("anthropic") == 1


@pytest.mark.parametrize(("provider", "n"), [("anthropic", 2), ("gemini", 9)])
def test_codecs_still_refuse_more_choices_than_they_return_themselves(provider, n):
    with pytest.raises(InvalidRequest) as info:
        codec_for(provider).request_body({"model": "g", "messages": USER, "n": n}, "m", False)
    assert info.value.param == "n"


def endpoint(name: str, provider: str, **extra) -> dict:
    return {"name": name, "provider": provider, "base_url": "http://mem/v1", "model": "m", **extra}


def config():
    ordered = {"strategy": "ordered"}
    return parse_config({"model_groups": {
        "mixed": {**ordered, "fallbacks": ["claude-only"], "endpoints": [
            endpoint("an", "anthropic"), endpoint("ge", "gemini"), endpoint("oa", "openai")]},
        "claude-only": {**ordered, "endpoints": [endpoint("an-2", "anthropic")]},
        "one-choice": {**ordered, "fallbacks": ["claude-only"], "endpoints": [endpoint("an-4", "anthropic")]},
        "to-openai": {**ordered, "fallbacks": ["mixed"], "endpoints": [endpoint("an-3", "anthropic")]},
    }})


def test_a_mixed_group_plans_several_choices_on_its_endpoints_that_return_them_only():
    state = RoutingState(config(), clock=ManualClock(100.0), rng=random.Random(0))
    assert state.plan("mixed").endpoints == ("an", "ge", "oa", "an-2")
    plan = state.plan("mixed", choices=2, lease="t1")
    assert plan.endpoints == ("ge", "oa")
    assert state.snapshot()["ge"]["in_flight"] == 1  # the lease is on the endpoint that will serve first
    assert state.plan("to-openai", choices=3).endpoints == ("ge", "oa")  # found down the fallback chain
    assert state.plan("mixed", choices=9).endpoints == ("oa",)  # more than Gemini's 8 candidates


def test_a_chain_with_no_endpoint_for_several_choices_is_a_400_naming_n():
    cfg = config()
    check_eligible(cfg, "mixed", choices=2)
    for check in (lambda: check_eligible(cfg, "one-choice", choices=2),
                  lambda: RoutingState(cfg).plan("one-choice", choices=2)):
        with pytest.raises(NoEligibleEndpoint) as info:
            check()
        error = info.value.to_openai()["error"]
        assert error["param"] == "n" and info.value.http_status == 400
        assert "anthropic" in error["message"] and "'n' is 2" in error["message"]


def test_a_missing_tag_is_reported_before_the_choices():
    with pytest.raises(NoEligibleEndpoint) as info:
        check_eligible(config(), "mixed", ["eu"], choices=2)
    assert info.value.param == "tags"


# -- the stream ----------------------------------------------------------------


def chunk(index: int, delta: dict, finish: str | None = None, chunk_id: str = "chatcmpl-n") -> dict:
    return {"id": chunk_id, "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}


def choice_stream(texts: list[list[str]], order: list[int] | None = None) -> list[dict]:
    """The chunks of one stream of ``len(texts)`` choices: role chunks, the
    words of each choice interleaved in ``order`` (choice indexes), finishes."""
    chunks = [chunk(i, {"role": "assistant", "content": ""}) for i in range(len(texts))]
    cursors = [0] * len(texts)
    for index in order if order is not None else [i for _ in range(max(map(len, texts), default=0)) for i in range(len(texts))]:
        if cursors[index] < len(texts[index]):
            chunks.append(chunk(index, {"content": texts[index][cursors[index]]}))
            cursors[index] += 1
    chunks += [chunk(i, {}, "stop") for i in range(len(texts))]
    return chunks


def event(value: dict) -> SSEEvent:
    raw = encode_json(value)
    return SSEEvent(raw, raw[len(b"data: "):].strip())


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_the_watch_keeps_each_choices_text_whatever_the_interleaving(data):
    texts = data.draw(st.lists(st.lists(st.sampled_from(["a", " b", " c", "d "]), max_size=6), min_size=2, max_size=4))
    order = data.draw(st.permutations([i for i, words in enumerate(texts) for _ in words]))
    watch = StreamWatch("e", forward_usage=False)
    for value in choice_stream(texts, list(order)):
        assert watch.accept(event(value))
    assert watch.text == "".join(texts[0])
    assert watch.reply_text == "\n".join("".join(words) for words in texts)
    assert watch.finish_reason == "stop"


def test_a_choice_with_a_malformed_index_is_the_upstreams_protocol_error():
    watch = StreamWatch("e", forward_usage=False)
    with pytest.raises(UpstreamProtocolError):
        watch.accept_chunk({"choices": [{"index": 0, "delta": {}}, {"index": "1", "delta": {"content": "x"}}]})


def sse(chunks: list[dict], *, usage: dict | None = None) -> list[bytes]:
    pieces = [encode_json(c) for c in chunks]
    if usage is not None:
        pieces.append(encode_json({"id": "chatcmpl-n", "object": "chat.completion.chunk", "created": 0,
                                   "model": "m", "choices": [], "usage": usage}))
    return [*pieces, b"data: [DONE]\n\n"]


def test_a_several_choice_stream_is_never_resumed_by_another_caller():
    two = sse(choice_stream([["a", " b"], ["c"]]))
    one = sse(choice_stream([["a", " b"]]))
    assert resume_point(two[:3]) is None
    assert resume_point(one[:2]) is not None


# -- the turn loop ---------------------------------------------------------------


class Turns:
    def __init__(self, handler):
        groups = {"g": {"strategy": "ordered", "timeouts": {"first_token_s": 5, "total_s": 10},
                        "endpoints": [endpoint("first", "openai"), endpoint("second", "openai")]}}
        self.config = parse_config({"model_groups": groups})
        self.state = RoutingState(self.config, clock=ManualClock(100.0), rng=random.Random(0))
        self.transport = MemoryTransport(handler)
        self.records: list = []
        self.runner = TurnRunner(self.config, self.transport, self.state.report, self.records.append)

    def request(self, *, stream: bool, n: int = 2) -> TurnRequest:
        turn_id = new_turn_id()
        plan = self.state.plan("g", choices=n, lease=turn_id, stream=stream)
        return TurnRequest(f"req-{turn_id[:8]}", "g", plan.endpoints, plan.max_attempts,
                           {"model": "g", "messages": USER, "n": n}, stream=stream, include_usage=True, turn_id=turn_id)

    def stream(self, request: TurnRequest) -> list:
        async def collect():
            return [item async for item in self.runner.stream(request)]
        return asyncio.run(collect())


def events_of(items: list) -> list[dict]:
    data = b"".join(i for i in items if isinstance(i, bytes))
    return [json.loads(e.data) for e in SSEDecoder().feed(data) if e.data and e.data != DONE_DATA]


def test_a_several_choice_stream_passes_through_with_every_index_and_usage_for_all():
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    turns = Turns(lambda request: Reply(200, sse(choice_stream([["a", " b"], ["c", " d"]]), usage=usage)))
    items = turns.stream(turns.request(stream=True))
    assert isinstance(items[0], TurnHead)
    chunks = events_of(items)
    assert {c["choices"][0]["index"] for c in chunks if c["choices"]} == {0, 1}
    assert chunks[-1]["usage"] == usage
    assert turns.transport.sent[0].body["n"] == 2  # passed through as asked
    (record,) = turns.records
    assert record.status == "ok" and record.text == "a b\nc d"
    assert record.usage.completion_tokens == 4
    assert turns.state.in_flight() == 0


def test_a_several_choice_stream_cut_mid_way_ends_with_an_error_event_not_a_continuation():
    cut = sse(choice_stream([["a", " b", " c"], ["d", " e", " f"]]))[:5] + [UpstreamDisconnected("cut", endpoint="first")]
    turns = Turns(lambda request: Reply(200, cut) if request.endpoint == "first" else Reply(200, sse(choice_stream([["x"], ["y"]]))))
    items = turns.stream(turns.request(stream=True))
    assert turns.transport.sent and [r.endpoint for r in turns.transport.sent] == ["first"]
    data = b"".join(i for i in items if isinstance(i, bytes))
    assert data.endswith(b"data: [DONE]\n\n")
    assert events_of(items)[-1]["error"]["code"] == "upstream_disconnected"
    (record,) = turns.records
    assert record.status == "error" and record.http_status == 200
    assert turns.state.in_flight() == 0


def test_a_whole_several_choice_reply_is_returned_as_is_and_its_text_covers_every_choice():
    completion = {"id": "chatcmpl-n", "object": "chat.completion", "created": 0, "model": "m",
                  "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                              for i, text in enumerate(["one", "two"])],
                  "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}

    turns = Turns(lambda request: Reply(200, [json.dumps(completion).encode()]))

    async def complete():
        return await turns.runner.complete(turns.request(stream=False))

    result = asyncio.run(complete())
    assert not isinstance(result, TurnFailure)
    assert json.loads(result[1])["choices"] == completion["choices"]
    (record,) = turns.records
    assert record.text == "one\ntwo" and record.usage.completion_tokens == 2


def test_the_cache_never_keeps_a_several_choice_turn():
    from router.response_cache import entry_from_chunks, entry_from_completion

    assert entry_from_chunks(choice_stream([["a"], ["b"]])) is None
    completion = {"choices": [{"index": i, "message": {"content": "x"}, "finish_reason": "stop"} for i in range(2)]}
    assert entry_from_completion(completion) is None


PROVIDERS = st.sampled_from(["openai", "anthropic", "gemini"])


@settings(max_examples=80, deadline=None)
@given(own=st.lists(PROVIDERS, min_size=1, max_size=4), fallback=st.lists(PROVIDERS, max_size=3), n=st.integers(1, 10))
def test_a_plan_holds_only_endpoints_that_return_n_choices_and_exists_iff_the_check_passes(own, fallback, n):
    groups = {"g": {"strategy": "ordered", "endpoints": [endpoint(f"g{i}", p) for i, p in enumerate(own)]}}
    if fallback:
        groups["g"]["fallbacks"] = ["f"]
        groups["f"] = {"strategy": "ordered", "endpoints": [endpoint(f"f{i}", p) for i, p in enumerate(fallback)]}
    cfg = parse_config({"model_groups": groups})
    providers = {f"g{i}": p for i, p in enumerate(own)} | {f"f{i}": p for i, p in enumerate(fallback)}
    servable = [name for name, p in providers.items() if n == 1 or p == "openai" or (p == "gemini" and n <= 8)]
    try:
        check_eligible(cfg, "g", choices=n)
        passed = True
    except NoEligibleEndpoint as error:
        passed = False
        assert error.param == "n"
    assert passed == bool(servable)
    if passed:
        plan = RoutingState(cfg, clock=ManualClock(100.0), rng=random.Random(0)).plan("g", choices=n)
        assert list(plan.endpoints) == servable  # every one that can, in chain order, and no other
