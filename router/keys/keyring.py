"""``KeyRing``: who is calling, and may they use this model.

Pure and synchronous: built once from ``AuthConfig``. The presented key is
hashed at once and compared with every configured hash using
``hmac.compare_digest``, without stopping at a match, so the time taken does
not depend on which key (if any) matched. The key itself is never stored,
logged or put in an error.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from fnmatch import fnmatchcase

from router.keys.config import AuthConfig
from router.keys.errors import AuthenticationError, MissingApiKey, PermissionDenied
from router.keys.hashing import HASH_PREFIX, digest_of, fingerprint

__all__ = ["KeyInfo", "KeyRing", "ANONYMOUS"]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """An authenticated client key: no secret in it, safe to log and repr.

    ``key_id`` (the configured name) goes in the turn log; ``fingerprint``
    is the first 8 hex digits of the key's hash.
    """

    name: str
    fingerprint: str
    models: tuple[str, ...] = ("*",)
    rate_limit_per_min: int | None = None
    metered: bool = False  # turns are charged: the key has a credit or a budget
    has_credit: bool = False  # responses carry ``x-nemo-credit-remaining``

    @property
    def key_id(self) -> str:
        return self.name

    def allows(self, model: str) -> bool:
        return any(fnmatchcase(model, pattern) for pattern in self.models)


ANONYMOUS = KeyInfo(name="anonymous", fingerprint="")
"""Who calls an open router (one with no keys configured)."""


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes
    info: KeyInfo


class KeyRing:
    """The configured keys. ``open`` when there are none: then every call is
    ``ANONYMOUS`` and the admin routes are open too (as before keys existed)."""

    def __init__(self, config: AuthConfig):
        self._entries = tuple(
            _Entry(_digest(k.hash), KeyInfo(k.name, fingerprint(k.hash), k.models, k.rate_limit_per_min, k.metered, k.credit_usd is not None))
            for k in config.keys
        )
        self._admin = _digest(config.admin_key_hash) if config.admin_key_hash else None

    def __repr__(self) -> str:
        return f"KeyRing(keys={[e.info.name for e in self._entries]}, admin={self._admin is not None})"

    @property
    def open(self) -> bool:
        return not self._entries

    def authenticate(self, authorization: str | None) -> KeyInfo:
        """The key behind an ``Authorization`` header value.

        Raises ``MissingApiKey`` (401) with no bearer key and
        ``AuthenticationError`` (401) for a key that is not configured.
        """
        if self.open:
            return ANONYMOUS
        digest = digest_of(_bearer(authorization))
        found: KeyInfo | None = None
        for entry in self._entries:  # no early exit: constant time in the match
            if hmac.compare_digest(digest, entry.digest):
                found = entry.info
        if found is None:
            raise AuthenticationError()
        return found

    def authorize(self, key: KeyInfo, model: str) -> None:
        """Raise ``PermissionDenied`` (403) unless ``key`` may use ``model``."""
        if not key.allows(model):
            raise PermissionDenied(f"API key '{key.name}' is not allowed to use the model '{model}'", param="model")

    def authenticate_admin(self, authorization: str | None) -> None:
        """Admit the admin key only: 401 without a key or with an unknown one,
        403 for a client key, or when no admin key is configured on a keyed router."""
        if self._admin is None:
            if self.open:
                return
            raise PermissionDenied("admin routes are disabled: no admin_key_hash is configured", code="admin_disabled")
        digest = digest_of(_bearer(authorization))
        if hmac.compare_digest(digest, self._admin):
            return
        if any([hmac.compare_digest(digest, entry.digest) for entry in self._entries]):
            raise PermissionDenied("this API key may not use the admin routes", code="admin_key_required")
        raise AuthenticationError()


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise MissingApiKey()
    return token


def _digest(key_hash: str) -> bytes:
    return bytes.fromhex(key_hash[len(HASH_PREFIX):])
