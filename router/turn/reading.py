"""Reading an upstream's reply for the turn runner: up to its first
content token, the text of a whole completion, and a provider's stream
translated into OpenAI's SSE (``router.turn.runner``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from router.errors import UpstreamDisconnected
from router.providers import TranslatedStream
from router.sse import SSEDecoder

__all__ = ["as_openai_sse", "completion_text", "read_to_first_content"]


async def read_to_first_content(chunks: AsyncIterator[bytes], relay) -> bytes:
    """Read until the first content token arrives; return everything accepted
    so far, so a role-only preamble is forwarded together with it. The
    caller's first-token deadline bounds the wait."""
    pending: list[bytes] = []
    watch = relay.watch
    async for raw in chunks:
        out = relay.feed(raw)
        if out:
            pending.append(out)
        if watch.saw_content or watch.done:
            return b"".join(pending)  # a failure later in this read is raised once it is forwarded
        if relay.failure is not None:
            raise relay.failure
    raise UpstreamDisconnected("upstream closed before the first token", endpoint=watch.endpoint)


def completion_text(completion: dict[str, Any]) -> str:
    """Every choice's content, one per line (one choice unless ``n > 1``)."""
    texts = []
    for choice in completion.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        texts.append(content if isinstance(content, str) else "")
    return "\n".join(texts)


async def as_openai_sse(chunks: AsyncIterator[bytes], translator) -> AsyncIterator[bytes]:
    """A provider's stream, translated into OpenAI SSE bytes, one piece per
    network read (the translated path re-encodes; OpenAI upstreams skip it)."""
    decoder, stream = SSEDecoder(), TranslatedStream(translator)
    async for raw in chunks:
        events = stream.feed(decoder.feed(raw))
        if events:
            yield b"".join(e.raw for e in events)
    yield b"".join(e.raw for e in stream.close())
