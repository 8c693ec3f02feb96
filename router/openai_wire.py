"""OpenAI's chat-completions wire format: validating requests, preparing the
upstream body. (Error replies are classified by each provider's codec,
``router.providers``.)

The request is validated once, on arrival, with a permissive model: the
fields we act on are type-checked, every other OpenAI parameter (``tools``,
``temperature``, ``response_format``, ...) passes through untouched.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from router.errors import InvalidRequest

__all__ = [
    "ChatRequest",
    "parse_chat_request",
    "upstream_body",
    "parse_retry_after_s",
]

# Request fields that belong to the router and are never sent upstream.
ROUTER_FIELDS = frozenset({"nemo_tags", "nemo_cache"})


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The fields of a chat-completions request that the router reads."""

    # Strict: "yes" is not a boolean and "0.5" is not a number.
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    messages: list[_Message] = Field(min_length=1)
    stream: bool = False
    stream_options: _StreamOptions | None = None
    temperature: float | int | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=None, ge=1, le=1)
    tools: list[dict[str, Any]] | None = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


def parse_chat_request(body: bytes) -> tuple[ChatRequest, dict[str, Any]]:
    """Validate a raw body; return the typed view and the original mapping."""
    try:
        raw = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(raw, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_json")
    try:
        return ChatRequest.model_validate(raw), raw
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"])
        missing = first["type"] == "missing"
        message = f"'{param}' is a required property" if missing else f"invalid '{param}': {first['msg']}"
        raise InvalidRequest(message, param=param, code="missing_required_parameter" if missing else "invalid_value") from exc


def upstream_body(raw: dict[str, Any], upstream_model: str, *, stream: bool) -> bytes:
    """The body sent upstream: the client's request with the endpoint's model id.

    Streaming turns always ask for usage, so the turn log has token counts;
    the usage-only chunk is dropped again for clients that did not ask.
    """
    body = {k: v for k, v in raw.items() if k not in ROUTER_FIELDS}
    body["model"] = upstream_model
    if stream:
        options = dict(body.get("stream_options") or {})
        options["include_usage"] = True
        body["stream_options"] = options
    return json.dumps(body, separators=(",", ":")).encode()


def parse_retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` in seconds (HTTP dates are rare from LLM APIs: ignored)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
