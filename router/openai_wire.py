"""OpenAI's chat-completions wire format: validating requests, preparing the
upstream body. (Error replies are classified by each provider's codec,
``router.providers``.)

The request is validated once, on arrival, with a permissive model: the
fields we act on are type-checked, every other OpenAI parameter (``tools``,
``temperature``, ``response_format``, ...) passes through untouched. The
body is loaded by ``router.request_guard`` (depth, Unicode and number
limits), and every error names the field as the client wrote it
(``messages[2].content``). ``drop_client_overrides`` strips credentials and
routing overrides a client may try to pass; ``request_id_from_header`` and
``is_json_content_type`` judge the two headers the ingress reads.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from router.errors import InvalidRequest
from router.request_guard import field_path, load_json_body

__all__ = [
    "MAX_CHOICES",
    "ChatRequest",
    "parse_chat_request",
    "drop_client_overrides",
    "request_id_from_header",
    "is_json_content_type",
    "upstream_body",
    "parse_retry_after_s",
]

# Request fields that belong to the router and are never sent upstream.
ROUTER_FIELDS = frozenset({"nemo_tags", "nemo_cache"})

# Body fields some SDKs and proxies read as credentials or as where to send
# the request (LiteLLM honours them per request). The router's endpoints and
# keys come from its config only, so a client's are dropped, never forwarded:
# an upstream that honours them would bill, or reach, someone else. Any key
# containing "api_key" (openai_api_key, azure_api_key...) counts too.
CLIENT_OVERRIDE_FIELDS = frozenset({"api_key", "api_base", "base_url", "extra_headers", "proxy"})

MAX_CHOICES = 128
"""The largest ``n`` accepted (OpenAI's own limit)."""

MAX_REQUEST_ID_CHARS = 128
_REQUEST_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_REQUEST_ID_CHARS}}}")


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    # A string, a list of content parts, or null (an assistant turn that only
    # called tools); anything else is the client's 400 naming
    # ``messages[i].content``, as OpenAI answers, not an upstream's.
    content: str | list[Any] | None = None


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
    # Choices per turn, up to OpenAI's own bound. Whether an endpoint can
    # return more than one is its provider's to say (``router.providers.max_choices``).
    n: int | None = Field(default=None, ge=1, le=MAX_CHOICES)
    tools: list[dict[str, Any]] | None = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def choices(self) -> int:
        """Choices the client asked for (``n``, 1 when unset)."""
        return self.n or 1


def parse_chat_request(body: bytes) -> tuple[ChatRequest, dict[str, Any]]:
    """Validate a raw body; return the typed view and the original mapping.

    Every failure is ``InvalidRequest`` (400) whose ``param`` is the field's
    path in the request."""
    raw = load_json_body(body)
    if not isinstance(raw, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_json")
    try:
        return ChatRequest.model_validate(raw), raw
    except ValidationError as exc:
        first = exc.errors()[0]
        missing = first["type"] == "missing"
        param = field_path(_request_path(first["loc"], raw, given=first["input"], missing=missing))
        if missing:
            message = f"'{param}' is a required property"
        else:
            message = f"invalid '{param}': {first['msg']}" if param else f"invalid request: {first['msg']}"
        raise InvalidRequest(message, param=param, code="missing_required_parameter" if missing else "invalid_value") from exc


def _request_path(loc: tuple[str | int, ...], raw: Any, *, given: Any, missing: bool) -> list[str | int]:
    """pydantic's error location as a path through the request itself.

    pydantic adds steps of its own (``temperature.float`` names the union
    member that failed; ``function-after[...]``, ``list[...]`` likewise).
    Following the location through the request keeps only the steps that are
    keys and indexes the client wrote, and stops at the value pydantic
    rejected (``given``), in case a tag is also a key of it. A missing
    field's last step is the field.
    """
    path: list[str | int] = []
    node, end = raw, None
    for i, step in enumerate(loc):
        if isinstance(step, int) and isinstance(node, list) and 0 <= step < len(node):
            path.append(step)
            node = node[step]
        elif isinstance(step, str) and isinstance(node, dict) and (step in node or (missing and i == len(loc) - 1)):
            path.append(step)
            node = node.get(step)
        if node is given:
            end = len(path)
    return path if missing or end is None else path[:end]


def drop_client_overrides(raw: dict[str, Any]) -> list[str]:
    """Remove, in place, top-level fields that carry client credentials or
    routing overrides (``CLIENT_OVERRIDE_FIELDS``, any key containing
    ``api_key``; case-insensitive, ``-`` read as ``_``). Returns one request
    note per field dropped; a note names the field, never its value."""
    dropped = [key for key in raw if _is_client_override(key)]
    for key in dropped:
        del raw[key]
    return [
        f"dropped client field {key[:64]!r} (the router never uses client credentials or routing overrides)"
        for key in dropped
    ]


def _is_client_override(key: str) -> bool:
    name = key.lower().replace("-", "_")
    return name in CLIENT_OVERRIDE_FIELDS or "api_key" in name


def request_id_from_header(value: str | None) -> str | None:
    """A client's ``x-request-id`` if it is 1 to 128 visible ASCII characters
    (0x21-0x7E: safe in logs, headers and file names), else None: the
    ingress then makes its own."""
    if value and _REQUEST_ID.fullmatch(value):
        return value
    return None


def is_json_content_type(value: str | None) -> bool:
    """Whether a ``content-type`` lets the body be read as JSON:
    ``application/json`` or any ``+json`` type, with any parameters
    (``; charset=utf-8``), case-insensitive. An absent or empty header is
    accepted (clients that send none mean JSON); anything else, such as the
    ``application/x-www-form-urlencoded`` of a bare ``curl -d``, is not
    (the ingress answers 415)."""
    if value is None or not value.strip():
        return True
    media_type = value.split(";", 1)[0].strip().lower()
    kind, _, subtype = media_type.partition("/")
    if not kind or not subtype:
        return False
    return media_type == "application/json" or (subtype.endswith("+json") and len(subtype) > len("+json"))


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
