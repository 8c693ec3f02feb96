"""A cross-provider chain, OpenAI -> Anthropic -> Gemini formats, end to end
through the official openai client: text and tool calls stream back as
OpenAI chunks whichever provider served the turn."""

from __future__ import annotations

import json

import pytest
from helpers import TEST_KEY

pytestmark = pytest.mark.ray

TOOLS = [
    {
        "type": "function",
        "function": {"name": "lookup_order", "description": "Find an order", "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}}},
    }
]


@pytest.fixture(params=["anthropic", "gemini"])
def served_by(request, simulator):
    # The OpenAI link always fails (500); for gemini the Anthropic link is
    # overloaded (529) too, so the chain walks to its third link.
    if request.param == "gemini":
        simulator.set_behavior("xp-an", failure="http_529")
    yield {"anthropic": "xp-an", "gemini": "xp-ge"}[request.param]
    simulator.set_behavior("xp-an", failure="none")


@pytest.fixture
def openai_client(router):
    from openai import OpenAI

    return OpenAI(base_url=f"{router}/v1", api_key=TEST_KEY, max_retries=0, timeout=20)


def test_streaming_text_across_providers(openai_client, served_by):
    raw = openai_client.chat.completions.with_raw_response.create(
        model="xp-openai",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert raw.headers["x-nemo-endpoint"] == served_by
    text, usage, finish = "", None, None
    for chunk in raw.parse():
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        usage = chunk.usage or usage
    assert text == "w1 w2 w3 w4 w5 w6"
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == 6


def test_streaming_tool_call_across_providers(openai_client, served_by):
    stream = openai_client.chat.completions.create(
        model="xp-openai",
        messages=[{"role": "user", "content": "please call a tool"}],
        tools=TOOLS,
        stream=True,
    )
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        if not chunk.choices:
            continue
        for call in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(call.index, {"id": None, "name": "", "arguments": ""})
            entry["id"] = call.id or entry["id"]
            if call.function:
                entry["name"] += call.function.name or ""
                entry["arguments"] += call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert list(calls) == [0]
    assert calls[0]["name"] == "lookup_order" and calls[0]["id"]
    assert json.loads(calls[0]["arguments"]) == {"n": 1}
    assert finish == "tool_calls"


def test_non_streaming_completion_across_providers(openai_client, served_by):
    raw = openai_client.chat.completions.with_raw_response.create(
        model="xp-openai", messages=[{"role": "user", "content": "count"}], max_tokens=4
    )
    assert raw.headers["x-nemo-endpoint"] == served_by
    completion = raw.parse()
    assert completion.choices[0].message.content == "w1 w2 w3 w4"
    assert completion.usage.completion_tokens == 4
