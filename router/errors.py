"""The router's error hierarchy, classified once where a reply is parsed.

Every error a client can see is a ``RouterError`` and renders as OpenAI's
error object ``{"error": {"message", "type", "code"}}`` with ``http_status``.
Nothing downstream inspects message text. An ``UpstreamError`` carries one
``kind`` (``router.outcome_kind.OutcomeKind``), fixed where the reply was
parsed; ``retryable``, ``counts_against_health`` and, for a status error, the
client's status are read from it, never re-derived.

    RouterError
    ├── ClientError                      the request itself is wrong (4xx)
    │   ├── InvalidRequest               400 malformed JSON, wrong types
    │   ├── ModelNotFound                404 unknown model or group
    │   ├── NoEligibleEndpoint           400 no endpoint has the required tags
    │   ├── PayloadTooLarge              413 body over the configured limit
    │   ├── RequestTimeout               408 the body did not arrive in time
    │   └── UnsupportedMediaType         415 a body that is not JSON
    └── UpstreamError                    one attempt at one endpoint failed
        ├── UpstreamConnectError         connection refused / reset (local)
        ├── UpstreamTimeout              no reply or no first token in time
        ├── UpstreamStatusError          upstream answered with an error status
        ├── UpstreamProtocolError        the upstream stream was malformed
        ├── UpstreamDisconnected         the stream ended before it was done
        └── UpstreamCannotServe          this provider cannot express the request
    AllAttemptsFailed                    every endpoint of the plan failed (502/504)
    TurnInterrupted                      the router lost the process serving the turn (502)
    TurnEndedByRouter                    the router ended a turn no endpoint failed
    ├── RouterStopping                   the router stopped before the turn could finish (503)
    └── ClientTooSlow                    the client read nothing of its stream until the deadline (408)
    TurnFailed                           a failed turn, raised to Python handle callers
"""

from __future__ import annotations

from dataclasses import dataclass

from router.outcome_kind import OutcomeKind

__all__ = [
    "RouterError",
    "ClientError",
    "InvalidRequest",
    "ModelNotFound",
    "NoEligibleEndpoint",
    "PayloadTooLarge",
    "RequestTimeout",
    "UnsupportedMediaType",
    "UpstreamError",
    "UpstreamConnectError",
    "UpstreamTimeout",
    "UpstreamStatusError",
    "UpstreamProtocolError",
    "UpstreamDisconnected",
    "UpstreamCannotServe",
    "kind_of_status",
    "AllAttemptsFailed",
    "TurnInterrupted",
    "TurnEndedByRouter",
    "RouterStopping",
    "ClientTooSlow",
    "TurnFailed",
    "ConfigError",
]


class RouterError(Exception):
    """Base of every error the router reports to a client."""

    http_status: int = 500
    error_type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param

    def headers(self) -> dict[str, str] | None:
        """Response headers the error needs (``retry-after``), if any."""
        return None

    def to_openai(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class ClientError(RouterError):
    http_status = 400
    error_type = "invalid_request_error"


class InvalidRequest(ClientError):
    code = "invalid_request"


class ModelNotFound(ClientError):
    http_status = 404
    code = "model_not_found"


class NoEligibleEndpoint(ClientError):
    """No endpoint of the group carries every tag the turn requires.

    ``missing_tags`` names them; the message says which and why (e.g. the
    request carries tools, so it needs ``function-calling``).
    """

    code = "no_eligible_endpoint"

    def __init__(self, message: str, *, missing_tags: tuple[str, ...] = (), param: str | None = "tags"):
        super().__init__(message, param=param)
        self.missing_tags = tuple(missing_tags)


class PayloadTooLarge(ClientError):
    http_status = 413
    code = "request_too_large"


class RequestTimeout(ClientError):
    http_status = 408
    code = "request_timeout"


class UnsupportedMediaType(ClientError):
    http_status = 415
    code = "unsupported_media_type"


class UpstreamError(RouterError):
    """One attempt failed; ``kind`` says how, once, for every reader.

    ``retryable``: another endpoint may serve the turn. ``counts_against_health``:
    the failure says something about the endpoint (as opposed to the request),
    so breakers and latency scores should see it. Both follow from ``kind``.
    """

    http_status = 502
    error_type = "upstream_error"
    kind = OutcomeKind.UPSTREAM_ERROR

    def __init__(self, message: str, *, endpoint: str | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.endpoint = endpoint

    @property
    def retryable(self) -> bool:
        return self.kind.retryable

    @property
    def counts_against_health(self) -> bool:
        return self.kind.counts_against_health


class UpstreamConnectError(UpstreamError):
    code = "upstream_connect_error"
    kind = OutcomeKind.CONNECT_ERROR


class UpstreamTimeout(UpstreamError):
    http_status = 504
    code = "upstream_timeout"
    kind = OutcomeKind.TIMEOUT


class UpstreamStatusError(UpstreamError):
    """The upstream replied with a non-2xx status (or an error event).

    ``kind`` by default follows the status: 429 is ``RATE_LIMITED``, 401 and
    403 ``UPSTREAM_AUTH`` (the router's provider key was refused: the
    endpoint's fault, never the client's), 5xx ``UPSTREAM_ERROR``, any other
    4xx ``REQUEST_REJECTED``; a codec passes the kind explicitly when the
    provider's error type knows better (an Anthropic ``overloaded_error`` is
    the provider's fault whatever the status). A rejected request passes its
    4xx status on to the client; any other kind is the router's 502.

    ``message`` is the router's own words, safe for the client; the
    upstream's text is never relayed. ``detail`` keeps it, redacted
    (``router.redact``), for the turn record and the operator's log.
    """

    code = "upstream_status_error"

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        retry_after_s: float | None = None,
        endpoint: str | None = None,
        kind: OutcomeKind | None = None,
        detail: str | None = None,
    ):
        super().__init__(message, endpoint=endpoint)
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        self.detail = detail
        self.kind = kind if kind is not None else kind_of_status(status_code)
        if self.kind is OutcomeKind.REQUEST_REJECTED:
            self.http_status = status_code if 400 <= status_code < 500 else 400
            self.error_type = "invalid_request_error"


def kind_of_status(status_code: int) -> OutcomeKind:
    """An error status's kind when nothing more specific is known."""
    if status_code == 429:
        return OutcomeKind.RATE_LIMITED
    if status_code in (401, 403):
        return OutcomeKind.UPSTREAM_AUTH
    return OutcomeKind.UPSTREAM_ERROR if status_code >= 500 else OutcomeKind.REQUEST_REJECTED


class UpstreamProtocolError(UpstreamError):
    code = "upstream_protocol_error"
    kind = OutcomeKind.PROTOCOL_ERROR


class UpstreamDisconnected(UpstreamError):
    code = "upstream_disconnected"
    kind = OutcomeKind.DISCONNECTED


class UpstreamCannotServe(UpstreamError):
    """This link's provider cannot express the request (e.g. ``n > 1`` on
    Anthropic): another link may, and the endpoint is not at fault."""

    http_status = 400
    error_type = "invalid_request_error"
    code = "unsupported_by_provider"
    kind = OutcomeKind.UNSUPPORTED


class AllAttemptsFailed(RouterError):
    """Every endpoint in the plan failed; carries each attempt's error."""

    http_status = 502
    error_type = "upstream_error"
    code = "all_upstreams_failed"

    def __init__(self, errors: list[UpstreamError]):
        self.errors = list(errors)
        summary = "; ".join(f"{e.endpoint}: {type(e).__name__}" for e in self.errors)
        super().__init__(f"no upstream could serve this turn ({summary or 'no endpoints'})")
        if self.errors and all(isinstance(e, UpstreamTimeout) for e in self.errors):
            self.http_status = 504
            self.code = "upstream_timeout"
        elif self.errors and not any(e.retryable for e in self.errors[-1:]):
            # The last answer was the request's own fault (a 4xx): pass it on.
            last = self.errors[-1]
            self.http_status = last.http_status
            self.error_type = last.error_type
            self.code = last.code
            self.message = last.message


class TurnInterrupted(RouterError):
    """The provider-caller serving a streamed turn was lost mid-stream and the
    turn could not be carried over: sent as an SSE error event before ``[DONE]``."""

    http_status = 502
    error_type = "server_error"
    code = "turn_interrupted"


class TurnEndedByRouter(RouterError):
    """The router ended a turn that no endpoint failed: its attempt is
    recorded as cancelled, and nothing counts against any endpoint."""


class ClientTooSlow(TurnEndedByRouter):
    """A streamed turn's client stopped reading: the router paused the
    upstream (``router.turn.pace``) until the turn's deadline, then ended it."""

    http_status = 408
    error_type = "invalid_request_error"
    code = "client_read_timeout"


class RouterStopping(TurnEndedByRouter):
    """The router is stopping: a new turn is refused (503, retry elsewhere
    or later), and a turn still running when the stop's grace period ends is
    ended with this error (a 503 before its stream starts, an SSE error
    event after). Nobody's fault: no endpoint's health counts it."""

    http_status = 503
    error_type = "server_error"
    code = "router_stopping"

    def headers(self) -> dict[str, str]:
        return {"retry-after": "1"}


class TurnFailed(RouterError):
    """A turn that failed, as a Python handle caller sees it: the same status
    and OpenAI error object an HTTP client would have received."""

    def __init__(self, http_status: int, error: dict):
        detail = error.get("error", {}) if isinstance(error, dict) else {}
        super().__init__(str(detail.get("message", "turn failed")), code=detail.get("code"), param=detail.get("param"))
        self.http_status = http_status
        self.error_type = str(detail.get("type", "upstream_error"))
        self._error = error

    def __reduce__(self):
        # Crosses Ray process boundaries: rebuild from what it was made of.
        return (type(self), (self.http_status, self._error))


@dataclass(frozen=True)
class ConfigIssue:
    path: str
    reason: str


class ConfigError(Exception):
    """The configuration is invalid: names the file, each field path and why."""

    def __init__(self, source: str, issues: list[ConfigIssue]):
        self.source = source
        self.issues = list(issues)
        lines = [f"{source}: {i.path}: {i.reason}" for i in self.issues]
        super().__init__("invalid configuration\n  " + "\n  ".join(lines))
