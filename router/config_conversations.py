"""Configuration of conversations: the turn counter (top-level
``conversations:``) and per-group cache-warm affinity (``affinity:``).
Part of ``router.config``'s schema; see ``router.conversation`` and
``router.affinity``.
"""

from __future__ import annotations

from pydantic import Field

from router.config_base import Frozen as _Frozen

__all__ = ["AffinityConfig", "ConversationsConfig"]


class ConversationsConfig(_Frozen):
    """The tracker's turn counter: at most ``max_tracked`` conversations
    (default 100,000; least recently active forgotten first), each
    forgotten ``idle_ttl_s`` seconds after its latest turn (default 1800)."""

    max_tracked: int = Field(default=100_000, ge=1)
    idle_ttl_s: float = Field(default=1800.0, gt=0)


class AffinityConfig(_Frozen):
    """Cache-warm routing for conversations (``router.affinity``).

    ``enabled`` (default true): a conversation prefers the endpoint that
    served its last turn while that endpoint is healthy and not slower than
    the best by more than the margin. ``ttl_s``: how long a pin outlives
    its conversation's latest turn, seconds (default 300, the usual provider
    prompt-cache lifetime). ``margin_s``: the break-away margin in seconds
    (default None: the pinned endpoint's measured cold-minus-warm time to
    first token when known, else ``default_margin_s``, 0.1). A very large
    margin is plain stickiness (move only on failure). ``max_pins``: pins
    kept per model group (default 100,000).
    """

    enabled: bool = True
    ttl_s: float = Field(default=300.0, gt=0)
    margin_s: float | None = Field(default=None, ge=0)
    default_margin_s: float = Field(default=0.1, ge=0)
    max_pins: int = Field(default=100_000, ge=1)
