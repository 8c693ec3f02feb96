"""SSE decoding and stream watching: pure, no Ray."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.errors import UpstreamProtocolError
from router.sse import DONE_EVENT, SSEDecoder, encode_json
from router.stream_watch import StreamWatch


def chunk(content=None, finish=None, usage=None, choices=True):
    body = {"id": "c1", "object": "chat.completion.chunk", "model": "m"}
    body["choices"] = [{"index": 0, "delta": {"content": content} if content is not None else {}, "finish_reason": finish}] if choices else []
    if usage is not None:
        body["usage"] = usage
    return encode_json(body)


STREAM = (
    chunk("")
    + chunk("w1")
    + chunk(" w2")
    + chunk(finish="stop")
    + chunk(choices=False, usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})
    + DONE_EVENT
)


def test_decoder_returns_complete_events_with_their_raw_bytes():
    events = SSEDecoder().feed(STREAM)
    assert b"".join(e.raw for e in events) == STREAM
    assert events[-1].data == b"[DONE]"
    assert json.loads(events[1].data)["choices"][0]["delta"]["content"] == "w1"


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=12))
def test_decoder_is_independent_of_how_bytes_are_split(cuts):
    cuts = sorted(set(cuts))
    pieces = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)])]
    decoder = SSEDecoder()
    events = [e for piece in pieces for e in decoder.feed(piece)]
    assert b"".join(e.raw for e in events) == STREAM
    assert not decoder.pending


def test_decoder_handles_crlf_multiline_data_and_comments():
    decoder = SSEDecoder()
    events = decoder.feed(b": keep-alive\r\n\r\nevent: message\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata: partial")
    assert [e.data for e in events] == [None, b'{"a":\n1}']
    assert events[1].event == "message"
    assert decoder.pending
    assert decoder.feed(b"\n\n")[0].data == b"partial"


def test_watch_tracks_first_content_usage_and_done_and_drops_unasked_usage():
    events = SSEDecoder().feed(STREAM)
    watch = StreamWatch("e", forward_usage=False)
    forwarded = [watch.accept(e) for e in events]
    assert forwarded == [True, True, True, True, False, True]
    assert watch.saw_content and watch.done
    assert watch.finish_reason == "stop"
    assert (watch.usage.prompt_tokens, watch.usage.completion_tokens) == (3, 2)

    asked = StreamWatch("e", forward_usage=True)
    assert all(asked.accept(e) for e in events)


def test_role_only_chunk_is_not_content():
    watch = StreamWatch("e", forward_usage=False)
    watch.accept(SSEDecoder().feed(chunk(""))[0])
    assert not watch.saw_content


@pytest.mark.parametrize("data", [b'data: {"choices": [\n\n', b"data: [1,2]\n\n", b'data: {"error": {"message": "x"}}\n\n'])
def test_watch_rejects_malformed_events_with_a_typed_error(data):
    watch = StreamWatch("e", forward_usage=False)
    with pytest.raises(UpstreamProtocolError):
        watch.accept(SSEDecoder().feed(data)[0])
