"""How one simulated upstream behaves: latency, length and failure mode.

A `Behavior` is an immutable value. Changing a profile at run time means
building a new `Behavior` with `merge_behavior`, which validates the patch
the same way the original was validated (unknown keys are errors).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Behavior", "FailureMode", "merge_behavior"]

FailureMode = Literal[
    "none",
    "http_500",
    "http_503",
    "http_429",
    "http_529",
    "hang",
    "drop_after",
    "malformed",
    "stall_after",
]

HTTP_FAILURE_STATUS: dict[str, int] = {"http_500": 500, "http_503": 503, "http_429": 429, "http_529": 529}
"""Failure modes answered with an immediate JSON error, by status (the error
object is in the request's format: OpenAI, Anthropic or Gemini)."""


class Behavior(BaseModel):
    """The script a profile follows for each chat completion request.

    Attributes:
        ttft_ms: Time from receiving the request to the first content token,
            in milliseconds. Default 50.
        token_interval_ms: Gap between consecutive content tokens, in
            milliseconds. Default 5.
        tokens: Number of content tokens (words `w1`, `w2`, ...) when the
            request sets no `max_tokens`; otherwise `min(tokens, max_tokens)`.
            Default 20.
        failure: What goes wrong. Default `"none"`.
            - `http_500` / `http_503` / `http_429` / `http_529`: immediate
              JSON error in the request's format (Anthropic answers 503 and
              529 with `overloaded_error`, Gemini with `UNAVAILABLE`).
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
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ttft_ms: float = Field(default=50.0, ge=0)
    token_interval_ms: float = Field(default=5.0, ge=0)
    tokens: int = Field(default=20, ge=0)
    failure: FailureMode = "none"
    drop_after_tokens: int = Field(default=5, ge=0)
    retry_after_s: float | None = Field(default=None, ge=0)
    failure_count: int | None = Field(default=None, ge=0)
    tool_call: bool = False

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
