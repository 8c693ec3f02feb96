"""The text form of a profile on the command line: `NAME[:key=value,...]`.

Keys are `Behavior` fields. Values are read as JSON when they parse (`40`,
`null`, `2.5`) and as plain strings otherwise (`http_503`), e.g.
`flaky:failure=http_503,retry_after_s=1,failure_count=3`.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["format_profile_spec", "parse_profile_spec"]


def parse_profile_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split `NAME[:k=v,...]` into the name and its raw Behavior fields.

    Raises:
        ValueError: on an empty name or a pair without `=`.
    """
    name, _, pairs = spec.partition(":")
    if not name:
        raise ValueError(f"profile spec {spec!r} has no name")
    fields: dict[str, Any] = {}
    for pair in filter(None, pairs.split(",")):
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"profile spec {spec!r}: expected key=value, got {pair!r}")
        fields[key.strip()] = _parse_value(raw.strip())
    return name, fields


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def format_profile_spec(name: str, fields: dict[str, Any]) -> str:
    """The inverse of `parse_profile_spec`, for building a command line."""
    pairs = ",".join(
        f"{key}={value if isinstance(value, str) else json.dumps(value)}"
        for key, value in fields.items()
    )
    return f"{name}:{pairs}" if pairs else name
