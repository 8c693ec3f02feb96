"""Client API keys: declared in config by hash, checked per turn.

    ring = KeyRing(config.auth)
    key = ring.authenticate(request.headers.get("authorization"))   # 401
    ring.authorize(key, chat.model)                                  # 403
    ok, retry_after_s = limiter.admit(key.key_id, key.rate_limit_per_min)
    if not ok: raise RateLimited(key.name, key.rate_limit_per_min, retry_after_s)  # 429

``KeyRing`` is pure; the rate limiter is a plain class that one Ray actor
holds (``deployments.keystore``) so the limit holds across ingress replicas.
"""

from router.keys.config import LOCAL_ADMIN_KEY, LOCAL_KEY, ApiKeyConfig, AuthConfig, local_auth_config
from router.keys.errors import AuthenticationError, MissingApiKey, PermissionDenied, RateLimited
from router.keys.hashing import HASH_PREFIX, generate_key, hash_key, parse_key_hash
from router.keys.keyring import ANONYMOUS, KeyInfo, KeyRing
from router.keys.limiter import RATE_WINDOW_S, Admission, SlidingWindowLimiter

__all__ = [
    "ApiKeyConfig",
    "AuthConfig",
    "LOCAL_KEY",
    "LOCAL_ADMIN_KEY",
    "local_auth_config",
    "AuthenticationError",
    "MissingApiKey",
    "PermissionDenied",
    "RateLimited",
    "HASH_PREFIX",
    "hash_key",
    "generate_key",
    "parse_key_hash",
    "KeyInfo",
    "KeyRing",
    "ANONYMOUS",
    "Admission",
    "SlidingWindowLimiter",
    "RATE_WINDOW_S",
]
