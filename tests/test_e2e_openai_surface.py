"""The OpenAI surface the official ``openai`` client calls (issue 18), end to
end through Ray Serve and the simulated providers: ``n > 1`` served by the
endpoints of a group that mixes providers that can return that many (Gemini
as candidates up to 8, OpenAI-compatible beyond; whole and streamed, usage
and cost over every choice) and refused where no endpoint can; ``models.retrieve``; the 404s of the APIs a voice gateway does not
serve; error params as the request's own paths; translated (Anthropic,
Gemini) replies that validate as the SDK's own types.
"""

from __future__ import annotations

import json
import uuid

import httpx
import openai
import pytest
from helpers import sim_endpoint, wait_for_records
from openai.types.chat import ChatCompletion, ChatCompletionChunk

pytestmark = pytest.mark.ray

APP = "nemo-router-surface"
PREFIX = "/surface"
KEY = "sk-test-surface"
USER = [{"role": "user", "content": "count for me"}]
WORDS = 6
FULL = " ".join(f"w{i}" for i in range(1, WORDS + 1))
PRICED = "catalog:gpt-4o-mini"  # an OpenAI-compatible endpoint the catalog prices


@pytest.fixture(scope="module")
def surface(router, simulator, tmp_path_factory):
    from ray import serve

    from deployments.app import build_app
    from router.config import parse_config
    from router.keys import hash_key

    simulator.set_behavior("surface", ttft_ms=5, token_interval_ms=1, tokens=WORDS)
    turn_log = tmp_path_factory.mktemp("surface-turnlog")

    def ep(name, provider):
        return sim_endpoint(simulator, name, "surface", provider)

    ordered = {"strategy": "ordered"}
    config = parse_config(
        {
            "model_groups": {
                # Ordered: one choice goes to the Anthropic endpoint; several
                # skip it (and more than Gemini's 8 skip the Gemini one).
                "mixed": {**ordered, "endpoints": [ep("mx-an", "anthropic"), ep("mx-ge", "gemini"), ep(PRICED, "openai")]},
                "claude": {**ordered, "endpoints": [ep("cl-an", "anthropic")]},
                "gemini": {**ordered, "endpoints": [ep("ge-ge", "gemini")]},
            },
            "auth": {"keys": [{"name": "surface", "hash": hash_key(KEY)}]},
            "turn_log": {"sink": "local", "path": str(turn_log), "flush_interval_s": 0.3},
            "deployments": {"tracker_name": "nemo-tracker-surface"},
            "cache": {"enabled": False},
            "metrics": {"enabled": False},
        }
    )
    serve.run(build_app(config), name=APP, route_prefix=PREFIX)
    yield f"{router}{PREFIX}", turn_log
    serve.delete(APP)


@pytest.fixture
def client(surface):
    url, _ = surface
    with openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=20) as client:
        yield client


def request_id(name: str) -> dict:
    return {"x-request-id": f"{name}-{uuid.uuid4().hex[:8]}"}


def priced_cost(prompt_tokens: int, completion_tokens: int) -> float:
    from router.catalog import load_catalog
    from router.catalog.cost import turn_cost_usd

    return turn_cost_usd(load_catalog().get("gpt-4o-mini").price, prompt_tokens, completion_tokens)


# -- n > 1 -----------------------------------------------------------------------


def test_nine_choices_whole_from_the_groups_openai_endpoint(surface, client):
    _, turn_log = surface
    headers = request_id("n9-whole")
    raw = client.chat.completions.with_raw_response.create(model="mixed", messages=USER, n=9, extra_headers=headers)
    completion = raw.parse()
    assert raw.headers["x-nemo-endpoint"] == PRICED
    assert [c.index for c in completion.choices] == list(range(9))
    assert [c.message.content for c in completion.choices] == [FULL] * 9
    assert completion.usage.completion_tokens == 9 * WORDS
    record = wait_for_records(turn_log, {headers["x-request-id"]})[headers["x-request-id"]]
    # The endpoints that cannot return nine were never tried, and the cost covers every choice.
    assert [a["endpoint"] for a in record["attempts"]] == [PRICED]
    assert record["completion_tokens"] == 9 * WORDS
    assert record["cost_usd"] == pytest.approx(priced_cost(record["prompt_tokens"], 9 * WORDS))


@pytest.mark.parametrize("stream", [False, True])
def test_two_choices_from_gemini_as_candidates(surface, client, stream):
    _, turn_log = surface
    headers = request_id(f"n2-gemini-{stream}")
    texts: dict[int, str] = {}
    if stream:
        with client.chat.completions.create(model="mixed", messages=USER, n=2, stream=True, extra_headers=headers) as chunks:
            for chunk in chunks:
                for choice in chunk.choices:
                    texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    else:
        completion = client.chat.completions.create(model="mixed", messages=USER, n=2, extra_headers=headers)
        texts = {c.index: c.message.content for c in completion.choices}
    assert texts == {0: FULL, 1: FULL}
    record = wait_for_records(turn_log, {headers["x-request-id"]})[headers["x-request-id"]]
    # The Anthropic endpoint, first in the group, was skipped for the Gemini one.
    assert [a["endpoint"] for a in record["attempts"]] == ["mx-ge"] and record["completion_tokens"] == 2 * WORDS


def test_nine_choices_streamed_each_under_its_index(surface, client):
    _, turn_log = surface
    headers = request_id("n9-stream")
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    usage = None
    with client.chat.completions.create(model="mixed", messages=USER, n=9, stream=True,
                                        stream_options={"include_usage": True}, extra_headers=headers) as stream:
        for chunk in stream:
            usage = chunk.usage or usage
            for choice in chunk.choices:
                texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
                if choice.finish_reason:
                    finishes[choice.index] = choice.finish_reason
    assert texts == dict.fromkeys(range(9), FULL) and finishes == dict.fromkeys(range(9), "stop")
    assert usage.completion_tokens == 9 * WORDS
    record = wait_for_records(turn_log, {headers["x-request-id"]})[headers["x-request-id"]]
    assert [a["endpoint"] for a in record["attempts"]] == [PRICED] and record["completion_tokens"] == 9 * WORDS


def test_one_choice_still_goes_to_the_first_endpoint(client):
    raw = client.chat.completions.with_raw_response.create(model="mixed", messages=USER)
    assert raw.headers["x-nemo-endpoint"] == "mx-an"
    assert raw.parse().choices[0].message.content == FULL


@pytest.mark.parametrize("stream", [False, True])
def test_two_choices_where_no_endpoint_can_are_a_400_naming_n(client, stream):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="claude", messages=USER, n=2, stream=stream)
    assert info.value.status_code == 400 and info.value.param == "n"
    assert "anthropic" in info.value.message


# -- models ------------------------------------------------------------------------


def test_models_retrieve(client):
    model = client.models.retrieve("mixed")
    assert model.id == "mixed" and model.object == "model"
    assert {m.id for m in client.models.list()} == {"mixed", "claude", "gemini"}


def test_an_unknown_model_is_a_404_in_openais_format(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("no-such-model")
    assert info.value.code == "model_not_found" and info.value.param == "model"


def test_models_retrieve_needs_the_same_key_as_the_list(surface):
    url, _ = surface
    with openai.OpenAI(base_url=f"{url}/v1", api_key="sk-wrong", max_retries=0) as stranger:
        with pytest.raises(openai.AuthenticationError):
            stranger.models.retrieve("mixed")
        with pytest.raises(openai.AuthenticationError):
            stranger.models.list()


# -- what a voice gateway does not serve --------------------------------------------


def test_legacy_completions_and_embeddings_are_a_clear_404(client, surface):
    with pytest.raises(openai.NotFoundError) as info:
        client.completions.create(model="mixed", prompt="hello")
    assert "/v1/completions" in info.value.message and "voice gateway" in info.value.message
    with pytest.raises(openai.NotFoundError) as info:
        client.embeddings.create(model="mixed", input="hello")
    assert "/v1/embeddings" in info.value.message
    url, _ = surface
    body = httpx.get(f"{url}/v1/embeddings", timeout=10).json()
    assert set(body["error"]) == {"message", "type", "param", "code"}


# -- error params --------------------------------------------------------------------


@pytest.mark.parametrize(("change", "param"), [
    ({"temperature": "warm"}, "temperature"),
    ({"messages": [*USER, {"role": "assistant", "content": "ok"}, {"role": "user", "content": 5}]}, "messages[2].content"),
])
def test_a_bad_field_is_named_by_its_path_in_the_request(client, change, param):
    body = {"model": "mixed", "messages": USER, **change}
    with pytest.raises(openai.BadRequestError) as info:
        client.post("/chat/completions", body=body, cast_to=ChatCompletion)
    assert info.value.param == param


# -- translated replies, as the SDK's types ---------------------------------------------


@pytest.mark.parametrize("group", ["claude", "gemini"])
def test_a_translated_reply_is_the_sdks_own_types(surface, group):
    url, _ = surface
    auth = {"authorization": f"Bearer {KEY}"}
    whole = httpx.post(f"{url}/v1/chat/completions", headers=auth, timeout=20,
                       json={"model": group, "messages": USER})
    assert whole.status_code == 200
    completion = ChatCompletion.model_validate(whole.json(), strict=True)
    assert completion.choices[0].message.content == FULL and whole.json()["choices"][0]["logprobs"] is None
    with httpx.stream("POST", f"{url}/v1/chat/completions", headers=auth, timeout=20,
                      json={"model": group, "messages": USER, "stream": True, "stream_options": {"include_usage": True}}) as response:
        data = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(json.loads(d), strict=True) for d in data[:-1]]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == FULL
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == WORDS
