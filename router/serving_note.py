"""What a streamed client cannot learn from headers: which endpoint finished
its turn and what the turn cost. Both are known only at the stream's end, so
they ride in the usage-only chunk (the last one before ``[DONE]``, sent when
the client asks for ``stream_options.include_usage``), under the vendor key
``nemo``, as ``/v1/models`` carries catalog fields::

    {"id": ..., "choices": [], "usage": {...}, "nemo": {"endpoint": "sim-fast", "cost_usd": 0.0000123}}

``cost_usd`` is the endpoint's catalog price times the usage in that chunk
(``router.catalog.turn_cost_usd``: the same figure the turn log records and a
metered key is charged when the provider reports usage); ``null`` for an
endpoint the catalog does not price, or a usage object without both counts.
A cache hit's replayed usage chunk says ``cost_usd: 0`` (hits cost nothing).
The ``openai`` client keeps unknown fields (``chunk.model_extra["nemo"]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from router.catalog import Price, turn_cost_usd

if TYPE_CHECKING:
    from router.stream_watch import Usage

__all__ = ["NOTE_KEY", "serving_note"]

NOTE_KEY = "nemo"


def serving_note(endpoint: str | None, price: Price | None, usage: "Usage | None") -> dict[str, Any]:
    """The ``nemo`` object of a streamed turn's usage chunk."""
    cost_usd = None
    if price is not None and usage is not None and usage.prompt_tokens is not None and usage.completion_tokens is not None:
        cost_usd = turn_cost_usd(price, usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens or 0)
    return {"endpoint": endpoint, "cost_usd": cost_usd}
