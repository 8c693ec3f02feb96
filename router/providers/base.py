"""The provider codec interface, and the error classification codecs share.

A codec translates between OpenAI's chat-completions format (what clients
send and what the router hands back) and one provider's wire format. It
never touches the network: the caller does the HTTP and hands the codec
bytes, so every codec is tested from recorded payloads alone.

One attempt at one endpoint, from the caller's side::

    codec = codec_for(endpoint.provider)
    body, notes = codec.request_body(request, endpoint.model, stream)  # notes -> turn record
    url = endpoint.base_url.rstrip("/") + codec.path(endpoint.model, stream)
    headers = codec.headers(api_key)
    # non-2xx reply:
    raise codec.error_from_status(status, body, retry_after, endpoint=name)
    # 2xx, stream=False:
    completion = codec.parse_response(payload, endpoint=name, model=endpoint.model)  # chat.completion dict
    # 2xx, stream=True: one translator per attempt
    translator = codec.stream_translator(endpoint.model, endpoint=name, choices=n)  # n: the request's
    for event in decoder.feed(raw): chunks = translator.feed(event)
    chunks = translator.finish()        # at end of body; raises if cut short
    translator.usage                    # OpenAI usage dict, once the stream ended

Errors are classified here, once, by HTTP status and the provider's
structured error type (never its message text): an ``UpstreamStatusError``
whose ``kind`` follows the status unless the type knows better (an Anthropic
``overloaded_error`` is the provider's fault whatever the status says). The
plan walk, the breaker, the tracker and the turn log all read that kind.
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

from router.errors import UpstreamError, UpstreamProtocolError, UpstreamStatusError, kind_of_status
from router.openai_wire import parse_retry_after_s
from router.outcome_kind import OutcomeKind
from router.redact import redact
from router.sse import SSEEvent

__all__ = [
    "ProviderCodec",
    "StreamTranslator",
    "as_dict",
    "as_list",
    "as_str",
    "dict_or_empty",
    "json_or_none",
    "load_json_object",
    "status_error",
    "token_count",
]



class StreamTranslator(Protocol):
    """Per-attempt state that turns one provider stream into OpenAI chunks.

    ``feed`` takes each decoded SSE event and returns zero or more
    ``chat.completion.chunk`` dicts; ``finish`` is called once when the
    upstream body ends and returns any trailing chunks (the usage-only
    chunk, ``choices: []``), or raises ``UpstreamDisconnected`` when the
    provider never said it was done. Malformed events raise
    ``UpstreamProtocolError``; a provider error event raises the classified
    ``UpstreamStatusError``.

    After the stream: ``usage`` is the OpenAI usage dict (or None) and
    ``finish_reason`` the OpenAI finish reason; ``done`` turns true once the
    provider signalled its end.
    """

    usage: dict[str, Any] | None
    finish_reason: str | None

    @property
    def done(self) -> bool: ...

    def feed(self, event: SSEEvent) -> list[dict[str, Any]]: ...

    def finish(self) -> list[dict[str, Any]]: ...


class ProviderCodec(Protocol):
    """Build requests for, and read replies from, one provider's API.

    ``passthrough``: the provider already streams OpenAI chunks, so the
    caller may forward the upstream bytes unchanged instead of re-encoding
    the translator's output. ``max_choices``: the largest ``n`` a request
    may carry (1: the provider returns one choice, and ``request_body``
    refuses more).
    """

    name: str
    passthrough: bool
    max_choices: int

    def path(self, model: str, stream: bool) -> str:
        """The URL path (and query) appended to the endpoint's ``base_url``."""
        ...

    def headers(self, api_key: str | None) -> dict[str, str]:
        """Content type, authentication and version headers."""
        ...

    def request_body(self, openai_request: dict[str, Any], model: str, stream: bool) -> tuple[bytes, list[str]]:
        """The upstream body and one note per parameter dropped on the way.

        Raises ``InvalidRequest`` (400) when the request asks for something
        the provider cannot do and dropping it would change the answer.
        """
        ...

    def parse_response(self, payload: bytes, *, endpoint: str | None = None, model: str | None = None) -> dict[str, Any]:
        """A non-streamed reply as an OpenAI ``chat.completion`` dict;
        ``model`` (the endpoint's upstream model) names it when the reply
        does not (a passthrough codec returns the reply as sent)."""
        ...

    def stream_translator(self, model: str, *, endpoint: str | None = None, choices: int = 1) -> StreamTranslator:
        """A fresh translator for one streamed attempt of ``choices`` choices
        (the request's ``n``; at most ``max_choices``)."""
        ...

    def error_from_status(
        self, status: int, body: bytes, retry_after: str | None, *, endpoint: str | None = None
    ) -> UpstreamError:
        """The classified error for a non-2xx reply."""
        ...


# -- reading a reply the router does not control --------------------------------
# json.loads fails with a ValueError (JSONDecodeError, UnicodeDecodeError, an
# integer past Python's 4300-digit limit) or a RecursionError (nesting past
# the interpreter's limit). Wrong types are caught where a field is read:
# a field the reply's meaning depends on (content, candidates, a finish
# reason) must have its type or the reply is an ``UpstreamProtocolError``;
# token counts are metadata and read as absent instead (``token_count``).

_JSON_ERRORS = (ValueError, RecursionError)

MAX_TOKEN_COUNT = 2**53 - 1
"""The largest token count believed: the largest integer every JSON reader
agrees on (RFC 8259, section 6); past it a count is nonsense and would not
survive re-encoding (Python refuses to print a 4300-digit integer)."""


def load_json_object(payload: bytes, what: str, endpoint: str | None) -> dict[str, Any]:
    """``payload`` as a JSON object, or ``UpstreamProtocolError`` naming ``what``."""
    try:
        value = json.loads(payload)
    except _JSON_ERRORS as exc:
        raise UpstreamProtocolError(f"upstream sent a malformed {what}", endpoint=endpoint) from exc
    if not isinstance(value, dict):
        raise UpstreamProtocolError(f"upstream {what} is not a JSON object", endpoint=endpoint)
    return value


def json_or_none(payload: bytes) -> Any:
    """``payload`` as JSON, or None if it is not JSON the router can read (an
    error body is classified by its status alone then)."""
    try:
        return json.loads(payload)
    except _JSON_ERRORS:
        return None


def as_dict(value: Any, what: str, endpoint: str | None) -> dict[str, Any]:
    """A JSON object field: ``{}`` when absent (null), else it must be an object."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UpstreamProtocolError(f"upstream {what} is not a JSON object", endpoint=endpoint)
    return value


def dict_or_empty(value: Any) -> dict[str, Any]:
    """``value`` if a JSON object, else ``{}``: for metadata (a usage object),
    where a wrong type reads as absent rather than failing the reply."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any, what: str, endpoint: str | None) -> list[Any]:
    """A JSON array field: ``[]`` when absent (null), else it must be an array."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise UpstreamProtocolError(f"upstream {what} is not a JSON array", endpoint=endpoint)
    return value


def as_str(value: Any, what: str, endpoint: str | None) -> str | None:
    """A string field: None when absent (null), else it must be a string."""
    if value is None or isinstance(value, str):
        return value
    raise UpstreamProtocolError(f"upstream {what} is not a string", endpoint=endpoint)


def token_count(value: Any) -> int | None:
    """A token count, or None when absent or not a believable count (not an
    integer, negative, or past ``MAX_TOKEN_COUNT``): usage is metadata, so a
    bad count is dropped rather than failing a turn that produced its answer."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKEN_COUNT:
        return value
    return None


def status_error(
    status_code: int,
    *,
    provider_type: str | None,
    detail: str | None,
    upstream_fault: bool | None,
    retry_after_s: float | str | None = None,
    endpoint: str | None = None,
) -> UpstreamStatusError:
    """An ``UpstreamStatusError`` classified by status, then by provider type.

    ``upstream_fault`` is the provider type's verdict (None: the type is
    unknown, the status decides). The error keeps the provider's type as
    ``provider_error_type`` for the turn record.
    """
    if isinstance(retry_after_s, str) or retry_after_s is None:
        retry_after_s = parse_retry_after_s(retry_after_s)
    kind = kind_of_status(status_code)
    if upstream_fault is not None and upstream_fault != kind.retryable and kind is not OutcomeKind.UPSTREAM_AUTH:
        # The provider's type overrules the status: its fault (an overloaded
        # service answering 400) or the request's (a 5xx naming a bad field).
        # A refused key stays the endpoint's fault whatever the type says.
        kind = OutcomeKind.UPSTREAM_ERROR if upstream_fault else OutcomeKind.REQUEST_REJECTED
    error = UpstreamStatusError(
        public_message(kind, status_code, provider_type, endpoint),
        status_code=status_code,
        retry_after_s=retry_after_s,
        endpoint=endpoint,
        kind=kind,
        detail=redact(f"HTTP {status_code} ({provider_type}): {detail}" if provider_type else f"HTTP {status_code}: {detail}"),
    )
    error.provider_error_type = provider_type  # type: ignore[attr-defined]
    if kind is OutcomeKind.REQUEST_REJECTED and provider_type and _SAFE_TYPE.fullmatch(provider_type):
        error.code = provider_type  # e.g. context_length_exceeded, as OpenAI's own clients expect
    return error


def public_message(kind: OutcomeKind, status_code: int, provider_type: str | None, endpoint: str | None) -> str:
    """What the client may read about an upstream's error reply: the router's
    own words, the status, the provider's error type (a fixed vocabulary) and
    the endpoint's configured name, never the upstream's text."""
    where = f"endpoint {endpoint!r}" if endpoint else "the upstream"
    typed = f", {provider_type}" if provider_type and _SAFE_TYPE.fullmatch(provider_type) else ""
    if kind is OutcomeKind.REQUEST_REJECTED:
        return f"{where} rejected the request (HTTP {status_code}{typed})"
    if kind is OutcomeKind.UPSTREAM_AUTH:
        return f"{where} refused the router's provider credentials (HTTP {status_code}); the operator has been told"
    return f"{where} failed (HTTP {status_code}{typed})"


_SAFE_TYPE = re.compile(r"[A-Za-z_]{1,64}")
