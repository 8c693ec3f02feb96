"""Cost per turn, in USD, from catalog prices and token counts.

The counts are the provider's own (``usage``) whenever it sent them. When it
did not (some streams end without a usage chunk), ``turn_cost`` estimates the
missing count from the text and flags the result ``estimated=True``.

The estimate is tokenizer-free on purpose: a real tokenizer (tiktoken) needs
BPE files downloaded at run time, and every provider tokenizes differently
anyway. ``estimate_tokens`` splits text into letter runs, digit runs and
single other characters, and counts a letter run as one token per started
six letters, a digit run as one token per started three digits (how
cl100k/o200k group digits), and every other non-space character as one
token. On English prose this agrees with OpenAI's rules of thumb (about 4
characters, or 0.75 words, per token) and is expected to land within about
25% of the provider's count; it is worse on code, long rare words and
non-Latin scripts (CJK counts one token per character), and Claude's and
Gemini's tokenizers differ from OpenAI's. Not measured against a tokenizer
here: use estimated costs for dashboards, never for invoices.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from router.catalog.schema import Price

__all__ = [
    "TurnCost",
    "turn_cost_usd",
    "turn_cost",
    "estimate_tokens",
    "estimate_prompt_tokens",
    "MESSAGE_OVERHEAD_TOKENS",
    "REPLY_PRIMING_TOKENS",
    "IMAGE_TOKENS",
]

TOKENS_PER_MILLION = 1_000_000

# OpenAI's documented chat framing: about 3 tokens per message (role and
# separators) plus 3 that prime the assistant's reply.
MESSAGE_OVERHEAD_TOKENS = 3
REPLY_PRIMING_TOKENS = 3
# A 1024x1024 image at detail "high" on gpt-4o: 4 tiles x 170 + 85.
IMAGE_TOKENS = 765

_PIECES = re.compile(r"[^\W\d_]+|\d+|[^\w\s]|_", re.UNICODE)
_LETTERS_PER_TOKEN = 6
_DIGITS_PER_TOKEN = 3


@dataclass(frozen=True, slots=True)
class TurnCost:
    """What one turn cost: ``usd`` for ``prompt_tokens`` + ``completion_tokens``.
    ``estimated`` is True when either count was estimated, not reported."""

    usd: float
    prompt_tokens: int
    completion_tokens: int
    estimated: bool = False
    cached_tokens: int = 0  # of prompt_tokens, priced at the cached-input price


def turn_cost_usd(price: Price, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
    """USD for the given counts at ``price`` (USD per million tokens).

    ``cached_tokens`` (part of ``prompt_tokens``, as providers report them)
    are priced at ``cached_input_per_mtok`` when the catalog lists one, else
    at the full input price. List price otherwise: long-context tiers and
    cache-write surcharges (Anthropic) are not modelled.
    """
    if prompt_tokens < 0 or completion_tokens < 0 or cached_tokens < 0:
        raise ValueError("token counts must not be negative")
    cached = min(cached_tokens, prompt_tokens) if price.cached_input_per_mtok is not None else 0
    # One division at the end keeps whole-cent results exact in binary.
    micro = (
        (prompt_tokens - cached) * price.input_per_mtok
        + cached * (price.cached_input_per_mtok or 0.0)
        + completion_tokens * price.output_per_mtok
    )
    return micro / TOKENS_PER_MILLION


def turn_cost(
    price: Price,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    *,
    messages: Sequence[Mapping[str, Any]] = (),
    tools: Sequence[Mapping[str, Any]] | None = None,
    completion_text: str = "",
    cached_tokens: int | None = None,
) -> TurnCost:
    """The turn's cost from the provider's counts, estimating any that is None
    (the prompt from ``messages`` and ``tools``, the completion from
    ``completion_text``, which should include tool-call names and arguments).
    ``cached_tokens``: prompt tokens the provider reported as cached."""
    estimated = prompt_tokens is None or completion_tokens is None
    if prompt_tokens is None:
        prompt_tokens = estimate_prompt_tokens(messages, tools)
    if completion_tokens is None:
        completion_tokens = estimate_tokens(completion_text)
    cached = min(cached_tokens or 0, prompt_tokens)
    usd = turn_cost_usd(price, prompt_tokens, completion_tokens, cached)
    return TurnCost(usd, prompt_tokens, completion_tokens, estimated, cached)


def estimate_tokens(text: str) -> int:
    """A tokenizer-free token count for ``text`` (see the module docstring
    for the method and its error). 0 for empty text."""
    count = 0
    for piece in _PIECES.findall(text):
        first = piece[0]
        if first.isdigit():
            count += -(-len(piece) // _DIGITS_PER_TOKEN)
        elif first.isalpha() and first.isascii():
            count += -(-len(piece) // _LETTERS_PER_TOKEN)
        elif first.isalpha():
            count += len(piece)  # non-Latin scripts: about one token per character
        else:
            count += 1
    return count


def estimate_prompt_tokens(messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None = None) -> int:
    """Estimated prompt tokens of a chat request: each message's text, tool
    calls and images, OpenAI's framing overhead, and the tool definitions."""
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += MESSAGE_OVERHEAD_TOKENS + estimate_tokens(str(message.get("role", "")))
        total += sum(estimate_tokens(text) for text in _message_texts(message))
        total += IMAGE_TOKENS * _image_count(message.get("content"))
    if tools:
        total += estimate_tokens(json.dumps(list(tools), separators=(",", ":")))
    return total


def _message_texts(message: Mapping[str, Any]) -> Iterable[str]:
    content = message.get("content")
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                yield part["text"]
    if isinstance(message.get("name"), str):
        yield message["name"]
    for call in message.get("tool_calls") or ():
        function = (call.get("function") if isinstance(call, Mapping) else None) or {}
        yield str(function.get("name") or "")
        yield str(function.get("arguments") or "")


def _image_count(content: Any) -> int:
    if not isinstance(content, list):
        return 0
    return sum(1 for part in content if isinstance(part, Mapping) and part.get("type") == "image_url")
