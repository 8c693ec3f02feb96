"""The router's note on a streamed turn's usage chunk (``router.serving_note``):
the endpoint that finished the turn and what the turn cost, for a client
that reads the stream (the playground) and cannot wait for headers sent
before the cost was known. Over the in-memory transport: no Ray, no sockets."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionChunk

from router.catalog import Price, turn_cost_usd
from router.errors import UpstreamDisconnected
from router.response_cache import entry_from_chunks, replay_sse
from router.serving_note import serving_note
from router.sse import DONE_DATA, SSEDecoder
from router.stream_watch import Usage
from router.turn import TurnRunner
from router.turn.memory_transport import Reply, openai_sse
from test_turn_loop import WORDS, Turns, by_endpoint, continuer, group

PRICE = Price(input_per_mtok=0.15, output_per_mtok=0.60)


def chunks_of(items: list) -> list[dict]:
    data = b"".join(i for i in items if isinstance(i, bytes))
    return [json.loads(e.data) for e in SSEDecoder().feed(data) if e.data is not None and e.data != DONE_DATA]


def priced(turns: Turns, **prices: Price) -> Turns:
    turns.runner = TurnRunner(turns.config, turns.transport, turns._report, turns.records.append, prices=prices)
    return turns


def test_the_note_prices_the_usage_like_the_turn_log():
    usage = Usage(prompt_tokens=1200, completion_tokens=300, total_tokens=1500)
    assert serving_note("a", PRICE, usage) == {"endpoint": "a", "cost_usd": turn_cost_usd(PRICE, 1200, 300)}
    assert serving_note("a", None, usage) == {"endpoint": "a", "cost_usd": None}  # an unpriced endpoint
    assert serving_note("a", PRICE, Usage(12, None, None))["cost_usd"] is None  # a count missing: no guess here


@given(st.integers(0, 10**7), st.integers(0, 10**6), st.integers(0, 10**7))
def test_cached_prompt_tokens_never_cost_more_than_full_price(prompt, completion, cached):
    cached_price = Price(input_per_mtok=2.5, output_per_mtok=10.0, cached_input_per_mtok=1.25)
    note = serving_note("a", cached_price, Usage(prompt, completion, None, cached))
    assert 0 <= note["cost_usd"] <= turn_cost_usd(cached_price, prompt, completion) + 1e-12


def test_a_streamed_turn_asking_for_usage_gets_the_endpoint_and_the_cost_in_its_usage_chunk():
    turns = priced(Turns({"g": group("a")}, by_endpoint(a=Reply(200, openai_sse(WORDS)))), a=PRICE)
    items = turns.stream(turns.request("g", reserved=True, include_usage=True))
    *content, last = chunks_of(items)
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == len(WORDS)
    assert last["nemo"] == {"endpoint": "a", "cost_usd": turns.record.cost.usd}  # what the turn log says
    assert turns.record.cost.usd == pytest.approx((3 * 0.15 + len(WORDS) * 0.60) / 1e6)
    assert not any("nemo" in c for c in content)
    # The openai client reads it unchanged and keeps the note.
    parsed = ChatCompletionChunk.model_validate(last, strict=True)
    assert parsed.model_extra["nemo"]["endpoint"] == "a"


def test_a_turn_not_asking_for_usage_is_unchanged():
    turns = priced(Turns({"g": group("a")}, by_endpoint(a=Reply(200, openai_sse(WORDS)))), a=PRICE)
    items = turns.stream(turns.request("g", reserved=True, include_usage=False))
    assert not any("nemo" in c or c["choices"] == [] for c in chunks_of(items))


def test_a_turn_carried_over_mid_stream_names_the_endpoint_that_finished_it():
    cut = [*openai_sse(WORDS)[:4], UpstreamDisconnected("connection reset", endpoint="a")]
    turns = priced(Turns({"g": group("a", "b")}, by_endpoint(a=Reply(200, cut), b=continuer())), a=PRICE)
    items = turns.stream(turns.request("g", reserved=True, include_usage=True))
    last = chunks_of(items)[-1]
    assert last["nemo"] == {"endpoint": "b", "cost_usd": None}  # b is not priced
    assert turns.record.endpoint == "b"


def test_a_cache_hit_replays_its_usage_chunk_with_no_cost():
    items = [json.loads(e.data) for e in SSEDecoder().feed(b"".join(openai_sse(WORDS))) if e.data != DONE_DATA]
    entry = entry_from_chunks(items[:-1], usage=items[-1]["usage"], endpoint="a", provider="openai")
    last = json.loads(SSEDecoder().feed(b"".join(replay_sse(entry, True)))[-2].data)
    assert last["nemo"] == {"endpoint": "a", "cost_usd": 0.0}
    ChatCompletionChunk.model_validate(last, strict=True)


def test_a_non_streamed_turn_on_a_priced_endpoint_says_its_cost_in_a_header():
    from deployments.ingress_http import turn_headers
    from router.turn import TurnHead

    turns = Turns({"g": group("a")}, by_endpoint(a=Reply(200, openai_sse(WORDS))))
    request = turns.request("g", reserved=True, stream=False)
    head = TurnHead("a", "openai", "m", request.received_at, 0.05, cost_usd=0.0000186)
    assert turn_headers(request, head, 0.001, 0.06)["x-nemo-cost-usd"] == "1.86e-05"
    unpriced = TurnHead("a", "openai", "m", request.received_at, 0.05)
    assert "x-nemo-cost-usd" not in turn_headers(request, unpriced, 0.001, 0.06)
