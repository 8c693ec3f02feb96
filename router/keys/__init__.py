"""Client API keys: declared in config by hash, checked per turn.

    ring = KeyRing(config.auth)
    key = ring.authenticate(request.headers.get("authorization"))   # 401
    ring.authorize(key, chat.model)                                  # 403
    ok, retry_after_s = limiter.admit(key.key_id, key.rate_limit_per_min)
    if not ok: raise RateLimited(key.name, key.rate_limit_per_min, retry_after_s)  # 429
    cache.decide(key.key_id)  # metered keys: ADMIT / REFUSE (InsufficientQuota, 429) / ASK the keystore

``KeyRing`` is pure; the rate limiter and the spend ledger are plain classes
that one Ray actor holds (``deployments.keystore``) so limits hold across
ingress replicas; each ingress replica keeps an ``AllowanceCache`` of the
ledger's replies.
"""

from router.keys.allowance import AllowanceCache, Decision
from router.keys.config import LOCAL_ADMIN_KEY, LOCAL_KEY, ApiKeyConfig, AuthConfig, local_auth_config
from router.keys.errors import AuthenticationError, InsufficientQuota, MissingApiKey, PermissionDenied, RateLimited
from router.keys.hashing import HASH_PREFIX, generate_key, hash_key, parse_key_hash
from router.keys.keyring import ANONYMOUS, KeyInfo, KeyRing
from router.keys.ledger import Allowance, Charge, SpendLedger, TurnRef, turn_ref
from router.keys.limiter import RATE_WINDOW_S, Admission, SlidingWindowLimiter
from router.keys.periods import PERIODS, Period, period_bounds

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
    "InsufficientQuota",
    "Allowance",
    "AllowanceCache",
    "Charge",
    "Decision",
    "SpendLedger",
    "TurnRef",
    "turn_ref",
    "PERIODS",
    "Period",
    "period_bounds",
]
