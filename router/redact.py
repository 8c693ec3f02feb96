"""Redaction of upstream text before it is kept anywhere.

An upstream's error text is not ours: it can quote a fragment of the
router's own provider key (``Incorrect API key provided: sk-abc***xyz``),
internal URLs, hostnames and whatever else the provider put there. The
client never sees it (it gets the router's own message); the turn record
and the operator's log keep it with anything key-like or URL-like replaced,
and cut to ``MAX_DETAIL_CHARS``.
"""

from __future__ import annotations

import re

__all__ = ["MAX_DETAIL_CHARS", "REDACTED", "redact"]

MAX_DETAIL_CHARS = 300
REDACTED = "[redacted]"

_PATTERNS = re.compile(
    "|".join(
        (
            r"[a-zA-Z][a-zA-Z0-9+.-]*://\S+",  # any URL
            r"\b(?:sk|pk|rk|ak|key|sess|org|proj)[-_][A-Za-z0-9*._-]{3,}",  # sk-..., sk-proj-..., masked or not
            r"\bAIza[0-9A-Za-z_-]{10,}",  # Google API keys
            r"\b[Bb]earer\s+\S+",
            r"\b(?:[Aa][Pp][Ii][_-]?[Kk][Ee][Yy]|[Tt]oken|[Ss]ecret|[Pp]assword|[Aa]uthorization)\b\s*[:=]\s*\S+",
            r"\b[A-Za-z0-9_*+/=-]{24,}",  # long opaque runs: keys, tokens, hashes
            r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b",  # IPv4 addresses
        )
    )
)


def redact(text: str | None) -> str | None:
    """``text`` with key-like and URL-like runs replaced, at most
    ``MAX_DETAIL_CHARS`` long (None stays None)."""
    if text is None:
        return None
    return _PATTERNS.sub(REDACTED, text[: MAX_DETAIL_CHARS * 2])[:MAX_DETAIL_CHARS]
