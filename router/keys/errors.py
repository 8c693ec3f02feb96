"""The errors of authentication, authorization and admission, in OpenAI's
error format (the status codes and ``type``/``code`` OpenAI itself uses).

    ClientError (router.errors)
    ├── AuthenticationError    401 invalid_request_error / invalid_api_key
    │   └── MissingApiKey      401 invalid_request_error / (no code)
    ├── PermissionDenied       403 invalid_request_error / model_not_allowed
    ├── RateLimited            429 requests / rate_limit_exceeded (+ Retry-After)
    └── InsufficientQuota      429 insufficient_quota / insufficient_quota

No message ever quotes the presented key, masked or not.
"""

from __future__ import annotations

import math

from router.errors import ClientError

__all__ = ["AuthenticationError", "MissingApiKey", "PermissionDenied", "RateLimited", "InsufficientQuota"]


class AuthenticationError(ClientError):
    """A key was presented and is not one of ours."""

    http_status = 401
    code = "invalid_api_key"

    def __init__(self, message: str = "Incorrect API key provided.", **kwargs):
        super().__init__(message, **kwargs)


class MissingApiKey(AuthenticationError):
    """No ``Authorization: Bearer <key>`` header (OpenAI sends no code for it)."""

    code = None

    def __init__(self, message: str = (
        "You didn't provide an API key. You need to provide your API key in an "
        "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
    ), **kwargs):
        super().__init__(message, **kwargs)


class PermissionDenied(ClientError):
    """A valid key that may not do this (a model outside its list, an admin route)."""

    http_status = 403
    code = "model_not_allowed"


class RateLimited(ClientError):
    """The key used up its turns for the window; retry after ``retry_after_s``."""

    http_status = 429
    error_type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, key_name: str, limit_per_min: int, retry_after_s: float):
        self.retry_after_s = max(0.0, retry_after_s)
        self.limit_per_min = limit_per_min
        super().__init__(
            f"Rate limit reached for API key '{key_name}' on turns per minute: limit {limit_per_min}. "
            f"Please try again in {self.retry_after_s:.1f}s."
        )

    def headers(self) -> dict[str, str]:
        """``Retry-After`` in whole seconds (rounded up, at least 1)."""
        return {"retry-after": str(max(1, math.ceil(self.retry_after_s)))}


class InsufficientQuota(ClientError):
    """The key's credit or its period's budget is spent. OpenAI's own error for
    an account out of quota (429, ``insufficient_quota``), which the ``openai``
    client raises as ``RateLimitError`` and does not retry."""

    http_status = 429
    error_type = "insufficient_quota"
    code = "insufficient_quota"

    def __init__(self, key_name: str, what: str):
        super().__init__(
            f"API key '{key_name}' has used up its {what}. Ask the router's operator for a top-up "
            "or wait for the next budget period; GET /v1/me shows what is left."
        )
