"""How one simulated upstream behaves: latency, length and failure mode.

A `Behavior` is an immutable value. Changing a profile at run time means
building a new `Behavior` with `merge_behavior`, which validates the patch
the same way the original was validated (unknown keys are errors).

The one random choice, a heavy TTFT tail, is drawn per request by
`Behavior.first_token_ms`, from a random source passed in or from the
behaviour's own stream (seeded by `seed`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

__all__ = ["Behavior", "FailureMode", "merge_behavior"]

FailureMode = Literal[
    "none",
    "http_500",
    "http_503",
    "http_429",
    "http_529",
    "http_401",
    "http_403",
    "context_too_long",
    "hang",
    "drop_after",
    "malformed",
    "stall_after",
]

HTTP_FAILURE_STATUS: dict[str, int] = {
    "http_500": 500, "http_503": 503, "http_429": 429, "http_529": 529, "http_401": 401, "http_403": 403,
    "context_too_long": 400,
}
"""Failure modes answered with an immediate JSON error, by status (the error
object is in the request's format: OpenAI, Anthropic or Gemini)."""


class _Draws:
    """The random stream behind one behaviour's draws.

    Not part of the behaviour's value: pydantic compares private attributes
    too, and two behaviours with equal fields must stay equal whatever
    either has drawn so far.
    """

    __slots__ = ("rng",)

    def __init__(self, seed: int | None) -> None:
        self.rng = random.Random(seed)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Draws)

    __hash__ = None  # type: ignore[assignment]


class Behavior(BaseModel):
    """The script a profile follows for each chat completion request.

    Attributes:
        ttft_ms: Time from receiving the request to the first content token,
            in milliseconds. Default 50.
        ttft_tail_ms: The time to first token of a request that falls in
            the tail, in milliseconds. Default None (no tail).
        ttft_tail_share: Probability (0..1) that a request's time to first
            token is `ttft_tail_ms` instead of `ttft_ms`, drawn independently
            per request: a heavy tail, e.g. `ttft_ms=50, ttft_tail_ms=1500,
            ttft_tail_share=0.1` for hedging benchmarks. Later tokens keep
            their interval after it. A share above 0 needs `ttft_tail_ms`.
            Default 0.
        seed: Seed of the behaviour's random draws (the TTFT tail), so a
            profile replays the same sequence of tail and non-tail requests.
            Every new `Behavior` starts its stream afresh: setting a profile
            (even one unrelated field) restarts it, and a per-request
            `x-sim-behavior` override with a seed draws the same value every
            time. Default None (seeded from the OS).
        token_interval_ms: Gap between consecutive content tokens, in
            milliseconds. Default 5.
        tokens: Number of content tokens (words `w1`, `w2`, ...) when the
            request sets no `max_tokens`; otherwise `min(tokens, max_tokens)`.
            Default 20.
        failure: What goes wrong. Default `"none"`.
            - `http_401` / `http_403`: the router's provider key refused, with
              a message that quotes a fragment of it and an internal URL, as
              real providers' messages do.
            - `http_500` / `http_503` / `http_429` / `http_529`: immediate
              JSON error in the request's format (Anthropic answers 503 and
              529 with `overloaded_error`, Gemini with `UNAVAILABLE`).
            - `context_too_long`: an immediate 400 saying the prompt exceeds
              the model's context window (the request's fault, not the
              endpoint's: OpenAI's `context_length_exceeded`).
            - `hang`: accept the request and send nothing, not even headers,
              until the client disconnects.
            - `drop_after`: send `drop_after_tokens` tokens, then close the
              TCP connection mid-response (no finish chunk, no `[DONE]`).
            - `malformed`: send `drop_after_tokens` tokens, then one event
              whose data is not valid JSON, then end the response.
            - `stall_after`: send `drop_after_tokens` tokens, then send
              nothing more until the client disconnects.
            A tool-call reply counts as one token for these.
        drop_after_tokens: Good tokens sent before a `drop_after`,
            `malformed` or `stall_after` failure. Default 5.
        retry_after_s: When set, sent as the `Retry-After` header (seconds)
            with `http_429`, `http_503` and `http_529`. Default None (no header).
        failure_count: None means the failure applies to every request; N
            means it applies to the next N requests of the profile, after
            which the profile reverts to `failure="none"`. Default None.
        tool_call: Answer every request that declares tools with a call of
            its first tool (as if it said "call a tool"), except right
            after a tool result. Default False.
        prefix_cache_ttl_s: Keep a prompt-prefix cache for this profile
            (`prefix_cache`): a request whose message prefix the profile
            served within this many seconds has those tokens cached (usage
            reports `prompt_tokens_details.cached_tokens`, 0 when none) and
            starts after `ttft_ms * warm_ttft_factor`. OpenAI format only.
            Default None (no cache; usage reports no cached tokens).
        warm_ttft_factor: Multiplies the time to first token of a request
            with cached tokens. Default 0.3.
        ttft_per_in_flight: A finite capacity: each other request in flight
            at the profile when a request arrives stretches its time to
            first token by this fraction (a GPU batch shares its compute,
            so a served model's TTFT rises with concurrent load, as vLLM's
            does). Default 0 (unlimited capacity: load changes nothing).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ttft_ms: float = Field(default=50.0, ge=0)
    ttft_tail_ms: float | None = Field(default=None, ge=0)
    ttft_tail_share: float = Field(default=0.0, ge=0, le=1)
    seed: int | None = None
    token_interval_ms: float = Field(default=5.0, ge=0)
    tokens: int = Field(default=20, ge=0)
    failure: FailureMode = "none"
    drop_after_tokens: int = Field(default=5, ge=0)
    retry_after_s: float | None = Field(default=None, ge=0)
    failure_count: int | None = Field(default=None, ge=0)
    tool_call: bool = False
    prefix_cache_ttl_s: float | None = Field(default=None, gt=0)
    warm_ttft_factor: float = Field(default=0.3, ge=0)
    ttft_per_in_flight: float = Field(default=0.0, ge=0)

    _draws: _Draws | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _tail_has_a_time(self) -> Behavior:
        if self.ttft_tail_share > 0 and self.ttft_tail_ms is None:
            raise ValueError("ttft_tail_share above 0 needs ttft_tail_ms")
        return self

    def model_post_init(self, context: Any) -> None:
        # Only a tailed behaviour draws, so only it pays for seeding a stream.
        # model_copy (the registry using up failure_count) shares the stream.
        if self.ttft_tail_share > 0:
            self._draws = _Draws(self.seed)

    def first_token_ms(self, rng: random.Random | None = None) -> float:
        """One request's time to first token, in milliseconds.

        `ttft_tail_ms` with probability `ttft_tail_share`, else `ttft_ms`.
        Draws one number from `rng` if given, else from the behaviour's own
        stream; a share of 0 draws nothing and always gives `ttft_ms`.
        """
        if self.ttft_tail_share == 0 or self.ttft_tail_ms is None:
            return self.ttft_ms
        source = rng if rng is not None else self._stream()
        return self.ttft_tail_ms if source.random() < self.ttft_tail_share else self.ttft_ms

    def _stream(self) -> random.Random:
        assert self._draws is not None  # set by model_post_init for a tailed behaviour
        return self._draws.rng

    @property
    def http_status(self) -> int | None:
        """The error status this behaviour answers with, or None if it streams."""
        return HTTP_FAILURE_STATUS.get(self.failure)


def merge_behavior(base: Behavior, patch: Mapping[str, Any]) -> Behavior:
    """Return `base` with the fields in `patch` replaced, fully re-validated.

    Raises:
        pydantic.ValidationError: if `patch` names an unknown field or holds
            an invalid value.
    """
    # model_copy(update=...) would skip validation; a patch comes from the
    # network, so it goes through the same validator as a fresh Behavior.
    return Behavior.model_validate({**base.model_dump(), **patch})
