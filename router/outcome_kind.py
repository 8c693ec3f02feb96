"""What kind of thing happened to one attempt: the single classification of
an upstream failure.

Each ``UpstreamError`` carries one ``OutcomeKind``, set where the provider's
reply (or the transport's failure) is parsed: by HTTP status, then by the
provider's structured error type when it knows better. Everything after
that reads the kind and nothing else: the plan walk (``retryable``: may
another endpoint serve the turn?), the breaker and the latency estimates
(``counts_against_health``: does it say something about the endpoint?), the
tracker and the turn log (``value``).

Local failures (could not connect, timed out) stay apart from upstream ones
(5xx, 429), and faults of the request (other 4xx) from both.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["OutcomeKind"]


class OutcomeKind(str, Enum):
    OK = "ok"
    CONNECT_ERROR = "connect_error"
    TIMEOUT = "timeout"
    UPSTREAM_ERROR = "upstream_5xx"
    RATE_LIMITED = "rate_limited"
    # The upstream refused the router's own provider key (401/403): the
    # endpoint's fault, never the client's; the operator must act.
    UPSTREAM_AUTH = "upstream_auth"
    # The request is at fault (context too long, a bad parameter): not
    # retried down the chain, moved to ``request_error_fallback`` if declared.
    REQUEST_REJECTED = "request_rejected"
    # This provider cannot express the request (``n > 1`` on Anthropic):
    # another link may; the endpoint is not at fault.
    UNSUPPORTED = "unsupported"
    PROTOCOL_ERROR = "protocol_error"
    DISCONNECTED = "disconnected"
    CANCELLED = "cancelled"

    @property
    def counts_against_health(self) -> bool:
        return self not in _NOT_THE_ENDPOINTS_FAULT

    @property
    def retryable(self) -> bool:
        """Another endpoint may serve the turn after this failure."""
        return self is not OutcomeKind.REQUEST_REJECTED


_NOT_THE_ENDPOINTS_FAULT = frozenset(
    {OutcomeKind.OK, OutcomeKind.REQUEST_REJECTED, OutcomeKind.UNSUPPORTED, OutcomeKind.CANCELLED}
)
