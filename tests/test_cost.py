"""Cost per turn and the tokenizer-free estimate. Pure."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.catalog import Price, load_catalog, turn_cost, turn_cost_usd
from router.catalog.cost import (
    IMAGE_TOKENS,
    MESSAGE_OVERHEAD_TOKENS,
    REPLY_PRIMING_TOKENS,
    estimate_prompt_tokens,
    estimate_tokens,
)

GPT_4O = load_catalog().get("gpt-4o").price  # 2.50 in, 10.00 out per million


def test_cost_of_a_known_usage_is_exact():
    assert turn_cost_usd(GPT_4O, 1000, 500) == 0.0075
    assert turn_cost_usd(Price(input_per_mtok=0.15, output_per_mtok=0.60), 1_000_000, 1_000_000) == 0.75
    assert turn_cost_usd(GPT_4O, 0, 0) == 0.0


def test_negative_counts_are_refused():
    with pytest.raises(ValueError):
        turn_cost_usd(GPT_4O, -1, 0)


def test_reported_usage_is_not_estimated():
    cost = turn_cost(GPT_4O, 1000, 500)
    assert (cost.usd, cost.prompt_tokens, cost.completion_tokens, cost.estimated) == (0.0075, 1000, 500, False)


def test_missing_usage_is_estimated_and_flagged():
    messages = [{"role": "user", "content": "What is the weather like in Paris today?"}]
    cost = turn_cost(GPT_4O, None, None, messages=messages, completion_text="It is sunny and warm.")
    assert cost.estimated
    assert cost.prompt_tokens == estimate_prompt_tokens(messages)
    assert cost.completion_tokens == estimate_tokens("It is sunny and warm.") == 6
    assert cost.usd == turn_cost_usd(GPT_4O, cost.prompt_tokens, cost.completion_tokens)


def test_only_the_missing_count_is_estimated():
    cost = turn_cost(GPT_4O, 1234, None, completion_text="Sure.")
    assert cost.estimated and cost.prompt_tokens == 1234 and cost.completion_tokens == 2


def test_estimates_on_familiar_text():
    assert estimate_tokens("") == 0
    assert estimate_tokens("The quick brown fox jumps over the lazy dog.") == 10  # cl100k: 10
    assert estimate_tokens("1234567") == 3  # digits in groups of three
    assert estimate_tokens("你好世界") == 4  # one per character outside Latin script


def test_english_prose_lands_near_four_characters_per_token():
    prose = (
        "Voice assistants need the first token quickly, so the router keeps a latency score for every "
        "endpoint and sends each turn to the one most likely to answer first. When an endpoint fails, "
        "the turn moves on to the next one before the user hears anything."
    )
    assert 0.75 <= estimate_tokens(prose) / (len(prose) / 4) <= 1.25


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80), st.text(max_size=80))
def test_the_estimate_adds_up_over_words(a, b):
    assert estimate_tokens(a + " " + b) == estimate_tokens(a) + estimate_tokens(b)


def test_the_prompt_estimate_counts_framing_images_and_tools():
    text = [{"role": "user", "content": "hello there"}]
    base = REPLY_PRIMING_TOKENS + MESSAGE_OVERHEAD_TOKENS + estimate_tokens("user") + estimate_tokens("hello there")
    assert estimate_prompt_tokens(text) == base
    image = [{"role": "user", "content": [{"type": "text", "text": "hello there"},
                                          {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]
    assert estimate_prompt_tokens(image) == base + IMAGE_TOKENS
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    assert estimate_prompt_tokens(text, tools) > base
    calls = [{"role": "assistant", "content": None,
              "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}]
    assert estimate_prompt_tokens(calls) > REPLY_PRIMING_TOKENS + MESSAGE_OVERHEAD_TOKENS + 1


# -- cached prompt tokens ------------------------------------------------------


def test_cached_prompt_tokens_are_priced_at_the_cached_input_price():
    assert GPT_4O.cached_input_per_mtok == 1.25
    # 1000 prompt tokens of which 800 cached: 200 x 2.50 + 800 x 1.25 + 500 x 10.00 per million.
    assert turn_cost_usd(GPT_4O, 1000, 500, cached_tokens=800) == pytest.approx(0.0065)
    cost = turn_cost(GPT_4O, 1000, 500, cached_tokens=800)
    assert cost.usd == pytest.approx(0.0065) and cost.cached_tokens == 800 and not cost.estimated
    assert turn_cost(GPT_4O, 1000, 500, cached_tokens=5000).cached_tokens == 1000  # never more than the prompt


def test_without_a_cached_price_cached_tokens_cost_full_price():
    flat = Price(input_per_mtok=1.0, output_per_mtok=1.0)
    assert turn_cost_usd(flat, 1000, 0, cached_tokens=1000) == turn_cost_usd(flat, 1000, 0)


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_a_cached_prompt_never_costs_more(prompt, completion, cached):
    cached = min(cached, prompt)
    assert turn_cost_usd(GPT_4O, prompt, completion, cached) <= turn_cost_usd(GPT_4O, prompt, completion) + 1e-12


def test_usage_reads_cached_tokens():
    from router.stream_watch import Usage

    usage = Usage.from_dict({"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12, "prompt_tokens_details": {"cached_tokens": 8}})
    assert usage.cached_tokens == 8
    assert Usage.from_dict({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": "x"}}).cached_tokens is None
    assert Usage.from_dict({"prompt_tokens": 10, "prompt_tokens_details": None}).cached_tokens is None
