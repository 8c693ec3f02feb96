"""Provider codecs: OpenAI requests out, OpenAI replies back, for every API.

A codec builds the request body, reads a reply, and translates a stream
event by event; it never touches the network (see ``base`` for the
interface and how a caller drives it). ``codec_for(provider)`` gives the
shared codec of a provider name as written in config:

    openai      OpenAI-compatible chat completions (pass-through)
    anthropic   Anthropic Messages
    gemini      Google Gemini generateContent

Codecs hold no per-turn state (each stream gets its own translator), so
one instance per provider serves every turn. ``max_choices(provider)`` says
how many choices (``n``) one request to it can return.
"""

from __future__ import annotations

from router.providers.anthropic import AnthropicCodec
from router.providers.base import ProviderCodec, StreamTranslator
from router.providers.chunks import MessageAssembler, TranslatedStream, chunk_event
from router.providers.gemini import GeminiCodec
from router.providers.openai import OpenAICodec

__all__ = [
    "PROVIDERS",
    "AnthropicCodec",
    "GeminiCodec",
    "MessageAssembler",
    "OpenAICodec",
    "ProviderCodec",
    "StreamTranslator",
    "TranslatedStream",
    "chunk_event",
    "codec_for",
    "max_choices",
]

_CODECS: dict[str, ProviderCodec] = {
    "openai": OpenAICodec(),
    "anthropic": AnthropicCodec(),
    "gemini": GeminiCodec(),
}

PROVIDERS = tuple(_CODECS)
"""Every provider name ``codec_for`` knows."""


def codec_for(provider: str) -> ProviderCodec:
    """The codec of ``provider``; ``ValueError`` names the known ones otherwise."""
    try:
        return _CODECS[provider]
    except KeyError:
        raise ValueError(f"unknown provider '{provider}' (known: {', '.join(PROVIDERS)})") from None


def max_choices(provider: str) -> int:
    """The largest ``n`` one request to ``provider`` can be answered with:
    OpenAI-compatible upstreams take ``n`` as it comes, Anthropic and Gemini
    return one choice (see ``router.providers.openai_request``)."""
    return codec_for(provider).max_choices
