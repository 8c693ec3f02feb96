"""The router's error hierarchy, classified once where a reply is parsed.

Every error a client can see is a ``RouterError`` and renders as OpenAI's
error object ``{"error": {"message", "type", "code"}}`` with ``http_status``.
Nothing downstream inspects message text: callers branch on the class and on
its ``retryable`` / ``counts_against_health`` attributes.

    RouterError
    ├── ClientError                      the request itself is wrong (4xx)
    │   ├── InvalidRequest               400 malformed JSON, wrong types
    │   ├── ModelNotFound                404 unknown model or group
    │   ├── NoEligibleEndpoint           400 no endpoint has the required tags
    │   └── PayloadTooLarge              413 body over the configured limit
    └── UpstreamError                    one attempt at one endpoint failed
        ├── UpstreamConnectError         connection refused / reset (local)
        ├── UpstreamTimeout              no reply or no first token in time
        ├── UpstreamStatusError          upstream answered with an error status
        ├── UpstreamProtocolError        the upstream stream was malformed
        ├── UpstreamDisconnected         the stream ended before it was done
        └── UpstreamCannotServe          this provider cannot express the request
    AllAttemptsFailed                    every endpoint of the plan failed (502/504)
    TurnFailed                           a failed turn, raised to Python handle callers
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "RouterError",
    "ClientError",
    "InvalidRequest",
    "ModelNotFound",
    "NoEligibleEndpoint",
    "PayloadTooLarge",
    "UpstreamError",
    "UpstreamConnectError",
    "UpstreamTimeout",
    "UpstreamStatusError",
    "UpstreamProtocolError",
    "UpstreamDisconnected",
    "UpstreamCannotServe",
    "AllAttemptsFailed",
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


class UpstreamError(RouterError):
    """One attempt failed. ``retryable``: another endpoint may serve the turn.

    ``counts_against_health``: the failure says something about the endpoint
    (as opposed to the request), so breakers and latency scores should see it.
    """

    http_status = 502
    error_type = "upstream_error"
    retryable = True
    counts_against_health = True

    def __init__(self, message: str, *, endpoint: str | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.endpoint = endpoint


class UpstreamConnectError(UpstreamError):
    code = "upstream_connect_error"


class UpstreamTimeout(UpstreamError):
    http_status = 504
    code = "upstream_timeout"


class UpstreamStatusError(UpstreamError):
    """The upstream replied with a non-2xx status.

    5xx and 429 are retryable and count against health; other 4xx mean the
    request was refused for what it is, so they are neither.
    """

    code = "upstream_status_error"

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        retry_after_s: float | None = None,
        endpoint: str | None = None,
    ):
        super().__init__(message, endpoint=endpoint)
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        upstream_fault = status_code >= 500 or status_code == 429
        self.retryable = upstream_fault
        self.counts_against_health = upstream_fault
        if not upstream_fault:
            # The request is at fault: pass the status through to the client.
            self.http_status = status_code
            self.error_type = "invalid_request_error"


class UpstreamProtocolError(UpstreamError):
    code = "upstream_protocol_error"


class UpstreamDisconnected(UpstreamError):
    code = "upstream_disconnected"


class UpstreamCannotServe(UpstreamError):
    """This link's provider cannot express the request (e.g. ``n > 1`` on
    Anthropic): another link may, and the endpoint is not at fault."""

    http_status = 400
    error_type = "invalid_request_error"
    code = "unsupported_by_provider"
    counts_against_health = False


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
