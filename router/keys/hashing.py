"""API keys at rest: only their SHA-256, written ``sha256:<64 hex>``.

An unsalted fast hash is enough because keys are random, 256-bit secrets
made by ``generate_key`` (as GitHub and Stripe tokens are): there is no
dictionary to try. It would not be enough for keys people choose.
"""

from __future__ import annotations

import hashlib
import re
import secrets

__all__ = ["HASH_PREFIX", "KEY_PREFIX", "hash_key", "generate_key", "parse_key_hash", "digest_of", "fingerprint"]

HASH_PREFIX = "sha256:"
KEY_PREFIX = "sk-nemo-"
_HEX = re.compile(r"^[0-9a-f]{64}$")


def digest_of(key: str) -> bytes:
    """The 32-byte SHA-256 of a key as presented (UTF-8)."""
    return hashlib.sha256(key.encode("utf-8")).digest()


def hash_key(key: str) -> str:
    """What to write in config for ``key``: ``sha256:<hex>``
    (``nemo-router hash-key``)."""
    if not key:
        raise ValueError("an API key must not be empty")
    return HASH_PREFIX + digest_of(key).hex()


def generate_key(prefix: str = KEY_PREFIX) -> str:
    """A new random key: ``prefix`` + 43 URL-safe characters (256 bits)."""
    return prefix + secrets.token_urlsafe(32)


def parse_key_hash(value: str) -> str:
    """Normalise a configured hash to ``sha256:<lowercase hex>``.

    Accepts the bare 64 hex digits too; ``ValueError`` for anything else
    (never quoting the value: it may be a key pasted by mistake).
    """
    text = value.strip()
    if text[: len(HASH_PREFIX)].lower() == HASH_PREFIX:
        text = text[len(HASH_PREFIX):]
    text = text.lower()
    if not _HEX.match(text):
        raise ValueError("expected sha256:<64 hex digits>, as printed by `nemo-router hash-key`")
    return HASH_PREFIX + text


def fingerprint(key_hash: str) -> str:
    """The first 8 hex digits of a normalised hash: safe to log."""
    return key_hash[len(HASH_PREFIX): len(HASH_PREFIX) + 8]
