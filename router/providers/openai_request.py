"""Reading an OpenAI chat request on its way to another provider's format.

Shared by the non-OpenAI codecs: the parameter policy (what is translated,
what is dropped with a note, what is refused with a 400), and readers for
message content, images, tool declarations, tool choice and tool-call
arguments. Every refusal is an ``InvalidRequest`` naming the parameter.

Policy: a parameter is refused when dropping it would change what the
client gets back in a way it relies on (``n > 1``: several choices;
``logprobs``: log probabilities; audio output; a JSON response format the
provider cannot enforce). Anything else the provider cannot express
(penalties, ``seed``, ``logit_bias``, ``service_tier``, ``store``, ...) is
dropped with a note for the turn record.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from router.errors import InvalidRequest
from router.openai_wire import ROUTER_FIELDS

__all__ = [
    "ToolChoice",
    "content_text",
    "data_url",
    "declared_tools",
    "dropped_param_notes",
    "encode_body",
    "function_tools",
    "reject_meaning_changes",
    "response_format_type",
    "tool_arguments",
    "tool_choice",
]

# Read by every codec itself, never a note.
_ALWAYS_READ = frozenset({"model", "messages", "stream", "stream_options"}) | ROUTER_FIELDS

_JSON_FORMATS = ("json_object", "json_schema")


def reject_meaning_changes(
    request: dict[str, Any], provider: str, *, json_formats: bool = False, max_choices: int = 1
) -> None:
    """Refuse what cannot be dropped without changing the answer's shape.

    ``json_formats``: the provider can enforce ``response_format`` JSON.
    ``max_choices``: the most choices (``n``) it can return.
    """
    n = request.get("n")
    if n is not None and n != 1 and not (type(n) is int and 1 <= n <= max_choices):
        if max_choices == 1:
            raise InvalidRequest(f"{provider} endpoints return one choice; 'n' must be 1", param="n")
        raise InvalidRequest(f"{provider} endpoints return at most {max_choices} choices; 'n' must be 1 to {max_choices}", param="n")
    if request.get("logprobs") or request.get("top_logprobs"):
        raise InvalidRequest(f"{provider} endpoints do not return log probabilities", param="logprobs")
    if request.get("audio") or "audio" in (request.get("modalities") or ()):
        raise InvalidRequest(f"{provider} endpoints do not produce audio output", param="modalities")
    response_type = response_format_type(request)
    if response_type in _JSON_FORMATS and not json_formats:
        raise InvalidRequest(
            f"{provider} endpoints cannot enforce response_format '{response_type}'", param="response_format"
        )


def response_format_type(request: dict[str, Any]) -> str | None:
    """``response_format.type``, or None when unset or not an object."""
    response_format = request.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    return kind if isinstance(kind, str) else None


def dropped_param_notes(request: dict[str, Any], provider: str, translated: Collection[str]) -> list[str]:
    """One note per parameter that is set but neither translated nor refused.

    Unset values (``None``, ``False``, ``n: 1``) are not worth a note.
    """
    notes = []
    for key, value in request.items():
        if key in _ALWAYS_READ or key in translated or value is None or value is False:
            continue
        if key == "n" and value == 1:
            continue
        if key == "response_format" and response_format_type(request) == "text":
            continue
        notes.append(f"{provider}: dropped unsupported parameter '{key}'")
    return notes


def content_text(content: Any, where: str) -> str:
    """Text of a message content: a string, or a list of ``text`` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise InvalidRequest(f"'{where}[{i}]' must be a text part here", param=f"{where}[{i}]")
            texts.append(part["text"])
        return "".join(texts)
    raise InvalidRequest(f"'{where}' must be a string or a list of content parts", param=where)


def data_url(url: str, where: str) -> tuple[str, str] | None:
    """``(media_type, base64_data)`` of a ``data:`` URL, None for other URLs."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding != "base64" or not media_type:
        raise InvalidRequest(f"'{where}' must be a base64 data URL or an http(s) URL", param=where)
    return media_type, data


def function_tools(tools: Any) -> list[dict[str, Any]]:
    """The ``function`` objects of OpenAI tools; other tool types are refused."""
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be a list", param="tools")
    functions = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            raise InvalidRequest(f"'tools[{i}]' must be a function tool", param=f"tools[{i}]")
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise InvalidRequest(f"'tools[{i}].function.name' is required", param=f"tools[{i}].function.name")
        functions.append(function)
    return functions


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """OpenAI's ``tool_choice``: ``mode`` is auto, none, required or function."""

    mode: str
    function: str | None = None


def tool_choice(value: Any) -> ToolChoice | None:
    if value is None:
        return None
    if value in ("auto", "none", "required"):
        return ToolChoice(value)
    if isinstance(value, dict) and value.get("type") == "function":
        name = (value.get("function") or {}).get("name")
        if isinstance(name, str) and name:
            return ToolChoice("function", name)
    raise InvalidRequest("'tool_choice' must be auto, none, required or a function", param="tool_choice")


def declared_tools(request: dict[str, Any], provider: str, notes: list[str]) -> tuple[list[dict[str, Any]], ToolChoice | None]:
    """The request's function tools and tool choice, checked alike for every
    codec: a ``tool_choice`` that demands a tool with none declared is a 400,
    any other one without tools is dropped with a note."""
    choice = tool_choice(request.get("tool_choice"))
    if request.get("tools"):
        return function_tools(request["tools"]), choice
    if choice is not None and choice.mode in ("required", "function"):
        raise InvalidRequest("'tool_choice' requires 'tools'", param="tool_choice")
    if choice is not None:
        notes.append(f"{provider}: dropped 'tool_choice' (no tools declared)")
    return [], None


def tool_arguments(call: Any, where: str) -> tuple[str, str, dict[str, Any]]:
    """``(id, name, arguments)`` of an assistant message's tool call."""
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise InvalidRequest(f"'{where}' must be a function tool call", param=where)
    raw = function.get("arguments") or "{}"
    try:
        arguments = json.loads(raw) if isinstance(raw, str) else raw
    except (ValueError, RecursionError) as exc:  # also a 4300+ digit integer, nesting past the recursion limit
        raise InvalidRequest(f"'{where}.function.arguments' is not valid JSON", param=where) from exc
    if not isinstance(arguments, dict):
        raise InvalidRequest(f"'{where}.function.arguments' must be a JSON object", param=where)
    return str(call.get("id") or ""), function["name"], arguments


def encode_body(body: dict[str, Any]) -> bytes:
    """The provider body as compact JSON. Tool arguments parsed just under
    the recursion limit sit a few levels deeper in the body, so encoding it
    can still hit the limit: that request is refused, not a server error."""
    try:
        return json.dumps(body, separators=(",", ":")).encode()
    except RecursionError as exc:
        raise InvalidRequest("'messages' is nested too deeply", param="messages") from exc
