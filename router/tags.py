"""Which endpoints may serve a turn, by tag and by what their provider can
return.

Endpoints carry tags in config (``function-calling``, ``vision``, ``eu``...).
A request may ask for tags (header ``x-nemo-tags: eu, vision`` or a body
field); an endpoint is eligible only if it has every requested tag, and a
turn that carries ``tools`` also requires ``function-calling``. A turn that
asks for several choices (``n > 1``) also needs a provider that returns
that many (``router.providers.max_choices``: OpenAI-compatible endpoints
any, Gemini up to 8, Anthropic one). When no endpoint qualifies the turn
fails with ``NoEligibleEndpoint`` (400), whose message names the missing
tag(s), or ``n`` when only the choices rule them out.

Tags are lowercase ``[a-z0-9][a-z0-9._:-]*``; requested tags are lowercased
and stripped, so ``EU`` asks for ``eu``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

from router.errors import InvalidRequest, NoEligibleEndpoint
from router.providers import max_choices

__all__ = ["FUNCTION_CALLING", "TAG_PATTERN", "parse_tags", "required_tags", "eligible"]

FUNCTION_CALLING = "function-calling"
"""The tag a turn with ``tools`` requires."""

TAG_PATTERN = r"^[a-z0-9][a-z0-9._:-]{0,63}$"
_TAG = re.compile(TAG_PATTERN)


class _Tagged(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def tags(self) -> Collection[str]: ...

    @property
    def provider(self) -> str: ...


_E = TypeVar("_E", bound=_Tagged)


def parse_tags(raw: str | Iterable[str] | None, *, param: str = "tags") -> tuple[str, ...]:
    """Requested tags from a comma-separated header or a list, normalised:
    lowercased, stripped, deduplicated, sorted. Raises ``InvalidRequest``
    (naming ``param``) for a tag that is not well-formed, or for ``raw``
    that is neither (a body's ``nemo_tags`` may be any JSON value)."""
    if raw is None:
        return ()
    if isinstance(raw, str):
        parts = raw.split(",")
    elif isinstance(raw, Iterable) and not isinstance(raw, Mapping):
        parts = list(raw)
    else:
        raise InvalidRequest(
            f"tags must be a list of strings or a comma-separated string, got {type(raw).__name__}", param=param
        )
    tags: set[str] = set()
    for part in parts:
        if not isinstance(part, str):
            raise InvalidRequest(f"tags must be strings, got {type(part).__name__}", param=param)
        tag = part.strip().lower()
        if not tag:
            continue
        if not _TAG.match(tag):
            raise InvalidRequest(f"invalid tag {part.strip()!r}: expected {TAG_PATTERN}", param=param)
        tags.add(tag)
    return tuple(sorted(tags))


def required_tags(requested: Iterable[str] = (), *, has_tools: bool = False) -> frozenset[str]:
    """Every tag an endpoint must carry to serve the turn."""
    required = set(requested)
    if has_tools:
        required.add(FUNCTION_CALLING)
    return frozenset(required)


def eligible(
    group: str,
    endpoints: Sequence[_E],
    requested: Iterable[str] = (),
    *,
    has_tools: bool = False,
    choices: int = 1,
) -> tuple[_E, ...]:
    """The endpoints, in their given order, that carry every required tag
    and, for ``choices > 1``, whose provider returns that many choices.

    Raises ``NoEligibleEndpoint`` when none does: its ``missing_tags`` are the
    required tags no endpoint of the group has at all, or, when each tag exists
    somewhere but never all on one endpoint, what the closest endpoint lacks;
    when the tags are met and only the choices rule every endpoint out, its
    ``param`` is ``n``.
    """
    required = required_tags(requested, has_tools=has_tools)
    chosen = tuple(e for e in endpoints if required <= set(e.tags))
    if not chosen and endpoints:
        raise _no_eligible(group, endpoints, required, has_tools)
    if choices > 1:
        tagged, chosen = chosen, tuple(e for e in chosen if max_choices(e.provider) >= choices)
        if not chosen and tagged:
            raise _no_choices(group, tagged, choices)
    return chosen


def _no_choices(group: str, endpoints: Sequence[_Tagged], choices: int) -> NoEligibleEndpoint:
    providers = ", ".join(sorted({e.provider for e in endpoints}))
    return NoEligibleEndpoint(
        f"'n' is {choices}, but no endpoint of model {group!r} can return more than one choice"
        f" (its {providers} endpoints return one); send n=1, or use a model served by an OpenAI-compatible endpoint",
        param="n",
    )


def _no_eligible(group: str, endpoints: Sequence[_Tagged], required: frozenset[str], has_tools: bool) -> NoEligibleEndpoint:
    offered = set().union(*(set(e.tags) for e in endpoints))
    absent = sorted(required - offered)
    if absent:
        missing = absent
        reason = f"no endpoint of model {group!r} has the tag{'s' if len(absent) > 1 else ''} {_quoted(absent)}"
    else:
        closest = min(endpoints, key=lambda e: len(required - set(e.tags)))
        missing = sorted(required - set(closest.tags))
        reason = (
            f"no endpoint of model {group!r} has all of the tags {_quoted(sorted(required))}"
            f" (closest: {closest.name!r} lacks {_quoted(missing)})"
        )
    if has_tools and FUNCTION_CALLING in missing:
        reason += f"; {FUNCTION_CALLING!r} is required because the request carries tools"
    return NoEligibleEndpoint(reason, missing_tags=tuple(missing))


def _quoted(tags: Iterable[str]) -> str:
    return ", ".join(repr(t) for t in tags)
