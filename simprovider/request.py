"""What a request asks the simulator for, whatever wire format it came in.

Each wire module (`wire` for OpenAI, `anthropic_wire`, `gemini_wire`)
parses its own body into a `CompletionRequest`; the playback then only
deals in numbered words and one scripted tool call.

Two conventions let end-to-end tests steer the reply through any format:

- a tool call: when the request declares tools and its last message is a
  user message containing "call a tool" (or the behaviour sets
  `tool_call`), the reply is one call of the first declared tool with the
  arguments `{"n": 1}`. After a tool result the reply is text again, so a
  tool round trip ends.
- a continuation: when the last message is an assistant message whose text
  ends with the word `wK`, the reply continues with `w(K+1)`, up to the
  behaviour's `tokens` words in all (so a turn cut after `wK` and resumed
  elsewhere adds up to the same `w1 ... wN`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "TOOL_ARGUMENTS",
    "TOOL_CALL_TEXT",
    "TOOL_CALL_TOKENS",
    "CompletionRequest",
    "InvalidRequest",
    "Reply",
    "continuation_start",
    "token_text",
    "word_count",
]

TOOL_CALL_TEXT = "call a tool"
"""A last user message containing this asks for a tool call."""

TOOL_ARGUMENTS = {"n": 1}
"""The arguments of the scripted tool call."""

TOOL_CALL_TOKENS = 5
"""Completion tokens a tool-call reply reports."""

_LAST_WORD = re.compile(r"\bw(\d+)\s*$")


class InvalidRequest(ValueError):
    """The request body is not a usable request in its format (HTTP 400)."""


@dataclass(frozen=True)
class CompletionRequest:
    """The parts of a request the simulator acts on.

    Attributes:
        model: Echoed back in every reply; `sim-model` when absent.
        stream: Whether to answer with server-sent events.
        include_usage: OpenAI's `stream_options.include_usage`; the other
            formats always report usage.
        max_tokens: The request's output limit, or None.
        prompt_tokens: Rough prompt size: whitespace-separated words in all
            message and system texts, at least 1.
        first_word: Number of the first word of the reply (1, or K+1 when
            continuing an assistant text that ends with `wK`).
        tool_name: The first declared tool, or None when no tools.
        asks_for_tool: The last message is a user text containing
            `TOOL_CALL_TEXT`.
        after_tool_result: The last message carries a tool result.
        choices: OpenAI's `n`: the reply is given that many times, once per
            choice index, and usage counts every choice (as OpenAI's does).
            The other formats always answer one.
        prefixes: The request's message prefixes with their prompt tokens,
            for the profile's prefix cache (`prefix_cache`; OpenAI format only).
        cached_tokens: Prompt tokens the profile's prefix cache served, or
            None when the profile keeps no prefix cache (then usage says nothing).
    """

    model: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    prompt_tokens: int
    first_word: int = 1
    tool_name: str | None = None
    asks_for_tool: bool = False
    after_tool_result: bool = False
    choices: int = 1
    prefixes: tuple[tuple[str, int], ...] = ()
    cached_tokens: int | None = None


@dataclass(frozen=True)
class Reply:
    """What one reply carries: `n_words` numbered words from `first_word`,
    or, when `tool_name` is set, one call of that tool instead."""

    first_word: int
    n_words: int
    tool_name: str | None = None

    @property
    def text(self) -> str:
        return "".join(token_text(i) for i in range(self.first_word, self.first_word + self.n_words))

    @property
    def completion_tokens(self) -> int:
        return TOOL_CALL_TOKENS if self.tool_name else self.n_words


def token_text(index: int) -> str:
    """The content delta of word `index` (1-based): `w1`, ` w2`, ` w3`, ...

    Numbered words let a client check that a stream has no gap or repeat.
    """
    return f"w{index}" if index == 1 else f" w{index}"


def continuation_start(assistant_text: str) -> int:
    """The word to continue from: K+1 if the text ends with `wK`, else 1."""
    match = _LAST_WORD.search(assistant_text)
    return int(match.group(1)) + 1 if match else 1


def word_count(text: str) -> int:
    return len(text.split())
