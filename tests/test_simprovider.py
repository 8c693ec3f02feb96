"""The simulated provider, end to end over real HTTP, plus its pure parts.

One simulator process serves the whole module. Tests that change behaviour
use their own profile name, so they never see each other's changes or
counters. Every wait is bounded by an httpx timeout of a few seconds.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from simprovider import BEHAVIOR_HEADER, Behavior, SimulatorError, SimulatorProcess, start_simulator
from simprovider.profiles import ProfileRegistry
from simprovider.spec import format_profile_spec, parse_profile_spec
from simprovider.wire import ChunkFactory, sse_event

TIMEOUT_S = 5.0
SHORT_TIMEOUT = httpx.Timeout(5.0, read=0.5)
"""For requests expected to hang: connect normally, give up reading quickly."""

START_PROFILES = {
    "quick": {"ttft_ms": 10, "token_interval_ms": 1, "tokens": 5},
    "slowstart": {"ttft_ms": 300, "token_interval_ms": 1, "tokens": 3},
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator(START_PROFILES) as process:
        yield process


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=TIMEOUT_S) as c:
        yield c


def fresh_profile(sim: SimulatorProcess, **fields: Any) -> str:
    """A new profile with fast defaults plus `fields`, private to one test."""
    name = f"p{uuid.uuid4().hex[:8]}"
    sim.set_behavior(name, **{"ttft_ms": 5, "token_interval_ms": 1, "tokens": 6, **fields})
    return name


def chat_body(stream: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "model": "test-model",
        "messages": [{"role": "user", "content": "say four words please"}],
        "stream": stream,
        **extra,
    }


def read_events(response: httpx.Response) -> list[str]:
    """The data payloads of a server-sent event stream, in order."""
    return [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]


def stream_events(
    client: httpx.Client, url: str, headers: dict[str, str] | None = None, **extra: Any
) -> tuple[httpx.Response, list[str]]:
    with client.stream("POST", url, json=chat_body(**extra), headers=headers) as response:
        return response, read_events(response) if response.status_code == 200 else []


def content_of(events: list[str]) -> str:
    text = ""
    for data in events:
        if data == "[DONE]":
            continue
        for choice in json.loads(data)["choices"]:
            text += choice["delta"].get("content") or ""
    return text


def numbered(n: int) -> str:
    return " ".join(f"w{i}" for i in range(1, n + 1))


# --- streaming and non-streaming content ----------------------------------


def test_stream_carries_numbered_words_and_ends_with_done(sim, client):
    response, events = stream_events(client, sim.base_url("quick") + "/chat/completions")

    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-sim-profile"] == "quick"
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {"test-model"}
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-sim-")
    assert all("usage" not in c for c in chunks)
    assert content_of(events) == numbered(5)


def test_stream_with_include_usage_ends_with_usage_chunk(sim, client):
    _, events = stream_events(
        client, sim.base_url("quick") + "/chat/completions",
        stream_options={"include_usage": True},
    )

    chunks = [json.loads(e) for e in events[:-1]]
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}
    assert all(c["usage"] is None for c in chunks[:-1])


def test_max_tokens_caps_the_number_of_words(sim, client):
    _, events = stream_events(client, sim.base_url("quick") + "/chat/completions", max_tokens=2)

    assert content_of(events) == numbered(2)


def test_non_streaming_completion_has_message_and_usage(sim, client):
    response = client.post(sim.base_url("quick") + "/chat/completions", json=chat_body(stream=False))

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": numbered(5)}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}


def test_n_streams_every_choice_under_its_index_and_usage_counts_them_all(sim, client):
    _, events = stream_events(
        client, sim.base_url("quick") + "/chat/completions", n=3, stream_options={"include_usage": True}
    )

    chunks = [json.loads(e) for e in events[:-1]]
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    for chunk in chunks[:-1]:
        (choice,) = chunk["choices"]
        texts[choice["index"]] = texts.get(choice["index"], "") + (choice["delta"].get("content") or "")
        if choice["finish_reason"]:
            finishes[choice["index"]] = choice["finish_reason"]
    assert texts == {0: numbered(5), 1: numbered(5), 2: numbered(5)}
    assert finishes == {0: "stop", 1: "stop", 2: "stop"}
    assert chunks[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 15, "total_tokens": 19}


def test_n_gives_a_whole_completion_one_choice_per_index(sim, client):
    body = client.post(sim.base_url("quick") + "/chat/completions", json=chat_body(stream=False, n=2)).json()

    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert {c["message"]["content"] for c in body["choices"]} == {numbered(5)}
    assert body["usage"]["completion_tokens"] == 10


@pytest.mark.parametrize("n", [0, "2", 1.5, True, 129])
def test_a_bad_n_is_400(sim, client, n):
    response = client.post(sim.base_url("quick") + "/chat/completions", json=chat_body(stream=False, n=n))

    assert response.status_code == 400


def test_plain_v1_path_is_the_default_profile(sim, client):
    response = client.post(sim.url + "/v1/chat/completions", json=chat_body(stream=False))

    assert response.headers["x-sim-profile"] == "default"
    assert response.json()["choices"][0]["message"]["content"] == numbered(20)


def test_first_token_waits_for_ttft(sim, client):
    started_s = time.monotonic()
    first_token_s = None
    with client.stream(
        "POST", sim.base_url("slowstart") + "/chat/completions", json=chat_body()
    ) as response:
        for data in read_events(response):
            if content_of([data]):
                first_token_s = time.monotonic() - started_s
                break

    assert first_token_s is not None
    assert first_token_s >= 0.3 - 0.02  # lower bound only: CI machines are slow


def test_models_lists_sim_model(sim, client):
    response = client.get(sim.base_url("quick") + "/models")

    assert [m["id"] for m in response.json()["data"]] == ["sim-model"]


# --- request errors --------------------------------------------------------


def test_unknown_profile_is_openai_style_404(sim, client):
    response = client.post(sim.base_url("nosuch") + "/chat/completions", json=chat_body())

    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "code"}


@pytest.mark.parametrize("content", [b"{not json", b'{"model": "m"}', b"[]"])
def test_bad_body_is_400(sim, client, content):
    response = client.post(sim.base_url("quick") + "/chat/completions", content=content)

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


# --- failure modes ---------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "status", "retry_after"),
    [("http_500", 500, None), ("http_503", 503, "2"), ("http_429", 429, "1.5")],
)
def test_http_failures_return_openai_errors(sim, client, failure, status, retry_after):
    retry_after_s = float(retry_after) if retry_after else None
    profile = fresh_profile(sim, failure=failure, retry_after_s=retry_after_s)

    response = client.post(sim.base_url(profile) + "/chat/completions", json=chat_body())

    assert response.status_code == status
    assert set(response.json()["error"]) == {"message", "type", "code"}
    assert response.headers.get("retry-after") == retry_after


@pytest.mark.parametrize("stream", [True, False])
def test_hang_sends_nothing_until_the_client_gives_up(sim, stream):
    profile = fresh_profile(sim, failure="hang")

    with httpx.Client(timeout=SHORT_TIMEOUT) as short_client:
        with pytest.raises(httpx.ReadTimeout):
            short_client.post(sim.base_url(profile) + "/chat/completions", json=chat_body(stream))


def test_hang_is_released_when_the_client_disconnects(sim):
    profile = fresh_profile(sim, failure="hang")
    with httpx.Client(timeout=SHORT_TIMEOUT) as short_client:
        with pytest.raises(httpx.ReadTimeout):
            short_client.post(sim.base_url(profile) + "/chat/completions", json=chat_body())

    deadline_s = time.monotonic() + 3
    while sim.stats()[profile]["in_flight"] and time.monotonic() < deadline_s:
        time.sleep(0.05)
    assert sim.stats()[profile] == {"requests": 1, "in_flight": 0}


def test_drop_after_cuts_the_stream_after_exactly_n_tokens(sim, client):
    profile = fresh_profile(sim, failure="drop_after", drop_after_tokens=3)
    events: list[str] = []

    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream("POST", sim.base_url(profile) + "/chat/completions", json=chat_body()) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(line[len("data: "):])

    assert "[DONE]" not in events
    assert content_of(events) == numbered(3)
    assert all(json.loads(e)["choices"][0]["finish_reason"] is None for e in events)


def test_drop_after_cuts_a_buffered_body(sim, client):
    profile = fresh_profile(sim, failure="drop_after")

    with pytest.raises(httpx.RemoteProtocolError):
        client.post(sim.base_url(profile) + "/chat/completions", json=chat_body(stream=False))


def test_malformed_sends_a_data_line_that_is_not_json(sim, client):
    profile = fresh_profile(sim, failure="malformed", drop_after_tokens=2)

    _, events = stream_events(client, sim.base_url(profile) + "/chat/completions")

    good, bad = events[:-1], events[-1]
    assert content_of(good) == numbered(2)
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad)


def test_stall_after_sends_n_tokens_then_nothing(sim):
    profile = fresh_profile(sim, failure="stall_after", drop_after_tokens=2)
    events: list[str] = []

    with httpx.Client(timeout=SHORT_TIMEOUT) as short_client:
        with pytest.raises(httpx.ReadTimeout):
            with short_client.stream(
                "POST", sim.base_url(profile) + "/chat/completions", json=chat_body()
            ) as r:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        events.append(line[len("data: "):])

    assert content_of(events) == numbered(2)


def test_failure_count_fails_only_the_next_n_requests(sim, client):
    profile = fresh_profile(sim, failure="http_500", failure_count=1)
    url = sim.base_url(profile) + "/chat/completions"

    first = client.post(url, json=chat_body(stream=False))
    second = client.post(url, json=chat_body(stream=False))

    assert first.status_code == 500
    assert second.status_code == 200
    assert sim.profiles()[profile]["failure"] == "none"


# --- run-time control ------------------------------------------------------


def test_put_changes_the_next_request(sim, client):
    profile = fresh_profile(sim, tokens=4)
    url = sim.base_url(profile) + "/chat/completions"
    assert content_of(stream_events(client, url)[1]) == numbered(4)

    updated = sim.set_behavior(profile, tokens=2)

    assert updated["tokens"] == 2 and updated["ttft_ms"] == 5  # merged, not replaced
    assert content_of(stream_events(client, url)[1]) == numbered(2)


def test_put_with_unknown_field_is_refused(sim):
    with pytest.raises(SimulatorError):
        sim.set_behavior("quick", speed=3)


def test_stats_count_requests_per_profile(sim, client):
    profile = fresh_profile(sim)
    url = sim.base_url(profile) + "/chat/completions"
    for _ in range(3):
        client.post(url, json=chat_body(stream=False))

    assert sim.stats()[profile] == {"requests": 3, "in_flight": 0}


def test_behavior_header_overrides_one_request_only(sim, client):
    profile = fresh_profile(sim, failure="http_503", failure_count=2)
    url = sim.base_url(profile) + "/chat/completions"

    _, events = stream_events(
        client, url, headers={BEHAVIOR_HEADER: json.dumps({"failure": "none", "tokens": 3})}
    )

    assert content_of(events) == numbered(3)
    assert sim.profiles()[profile]["failure_count"] == 2  # not consumed
    assert client.post(url, json=chat_body()).status_code == 503


def test_bad_behavior_header_is_400(sim, client):
    response = client.post(
        sim.base_url("quick") + "/chat/completions",
        json=chat_body(),
        headers={BEHAVIOR_HEADER: '{"tokens": -1}'},
    )

    assert response.status_code == 400


def test_reset_restores_start_up_profiles():
    with start_simulator({"a": {"tokens": 7}}) as own:
        own.set_behavior("a", tokens=1)
        own.set_behavior("extra", tokens=2)

        own.reset()

        profiles = own.profiles()
        assert set(profiles) == {"default", "a"}
        assert profiles["a"]["tokens"] == 7
        assert own.stats()["a"] == {"requests": 0, "in_flight": 0}


# --- pure parts ------------------------------------------------------------


def test_profile_spec_round_trips():
    fields = {"ttft_ms": 40.0, "failure": "http_503", "retry_after_s": None, "tokens": 3}

    assert parse_profile_spec(format_profile_spec("fast", fields)) == ("fast", fields)
    assert parse_profile_spec("plain") == ("plain", {})
    with pytest.raises(ValueError):
        parse_profile_spec("fast:ttft_ms")


def test_registry_failure_count_reverts_to_none_after_n_takes():
    registry = ProfileRegistry({"p": Behavior(failure="hang", failure_count=2)})

    failures = [registry.take("p").failure for _ in range(3)]

    assert failures == ["hang", "hang", "none"]
    assert registry.peek("p").failure_count is None


def test_registry_uncounted_failure_applies_forever():
    registry = ProfileRegistry({"p": Behavior(failure="http_500")})

    assert {registry.take("p").failure for _ in range(5)} == {"http_500"}


@pytest.mark.parametrize("include_usage", [True, False])
@pytest.mark.parametrize("text", ["w1", ' "quoted" ', "naïve \\ \n"])
def test_content_chunk_template_matches_plain_encoding(include_usage, text):
    chunks = ChunkFactory("chatcmpl-sim-x", 123, 'model "q"', include_usage)
    expected: dict[str, Any] = {
        "id": "chatcmpl-sim-x",
        "object": "chat.completion.chunk",
        "created": 123,
        "model": 'model "q"',
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    if include_usage:
        expected["usage"] = None

    assert chunks.content(text) == sse_event(expected)
    expected["choices"][0]["index"] = 2
    assert chunks.content(text, 2) == sse_event(expected)
