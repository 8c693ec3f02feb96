"""Anthropic's Messages API (``POST /v1/messages``, version 2023-06-01).

The request translation, OpenAI -> Anthropic:

- ``system`` / ``developer`` messages -> the top-level ``system`` string
  (one met after the conversation started is hoisted, with a note);
- ``user`` / ``assistant`` turns, consecutive same-role turns merged into one
  (Anthropic wants alternating roles); text and image parts -> blocks;
- assistant ``tool_calls`` -> ``tool_use`` blocks; ``tool`` messages ->
  ``tool_result`` blocks in a user turn;
- ``max_completion_tokens`` / ``max_tokens`` -> ``max_tokens`` (required by
  Anthropic: ``default_max_tokens``, 1024, when the client set none);
- ``temperature`` (clamped to Anthropic's 0..1, with a note), ``top_p``,
  ``stop`` -> ``stop_sequences``, ``user`` -> ``metadata.user_id``;
- ``tools`` -> ``tools`` with ``input_schema``; ``tool_choice`` auto / none
  / required / function -> auto / none / any / tool;
  ``parallel_tool_calls: false`` -> ``disable_parallel_tool_use``.

A final assistant message is a prefill Anthropic continues from; its
trailing whitespace is stripped because the API refuses it. Replies are
read in ``anthropic_response``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from router.errors import InvalidRequest, UpstreamError
from router.providers.anthropic_response import AnthropicStreamTranslator, classify_error, parse_message
from router.providers.openai_request import (
    content_text,
    data_url,
    declared_tools,
    dropped_param_notes,
    encode_body,
    reject_meaning_changes,
    tool_arguments,
)

__all__ = ["AnthropicCodec"]

API_VERSION = "2023-06-01"
MAX_TEMPERATURE = 1.0

_TRANSLATED = frozenset(
    {"max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "tools", "tool_choice",
     "parallel_tool_calls", "user"}
)
_CHOICE_TYPES = {"auto": "auto", "none": "none", "required": "any"}


def _random_token() -> str:
    return secrets.token_hex(12)


class AnthropicCodec:
    """OpenAI chat requests to Anthropic Messages, and its replies back.

    ``token_factory`` gives the unique suffix of ids the router makes up
    (``chatcmpl-...`` when a reply carries no id); ``clock`` gives the
    ``created`` time (wall clock, s). Both injectable for reproducible tests.
    """

    name = "anthropic"
    passthrough = False
    max_choices = 1  # Messages has no n: one message per request

    def __init__(
        self,
        *,
        default_max_tokens: int = 1024,
        token_factory: Callable[[], str] = _random_token,
        clock: Callable[[], float] = time.time,
    ):
        self.default_max_tokens = default_max_tokens
        self._token_factory = token_factory
        self._clock = clock

    def path(self, model: str, stream: bool) -> str:
        return "/v1/messages"

    def headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json", "anthropic-version": API_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def request_body(self, openai_request: dict[str, Any], model: str, stream: bool) -> tuple[bytes, list[str]]:
        reject_meaning_changes(openai_request, self.name)
        notes = dropped_param_notes(openai_request, self.name, _TRANSLATED)
        system, messages = _messages(openai_request.get("messages") or [], notes)
        body: dict[str, Any] = {"model": model, "max_tokens": self._max_tokens(openai_request)}
        if system:
            body["system"] = system
        body["messages"] = messages
        body.update(_sampling(openai_request, notes))
        body.update(_tools(openai_request, notes))
        if openai_request.get("user"):
            body["metadata"] = {"user_id": str(openai_request["user"])}
        if stream:
            body["stream"] = True
        return encode_body(body), notes

    def _max_tokens(self, request: dict[str, Any]) -> int:
        for key in ("max_completion_tokens", "max_tokens"):
            if request.get(key) is not None:
                return int(request[key])
        return self.default_max_tokens

    def parse_response(self, payload: bytes, *, endpoint: str | None = None, model: str | None = None) -> dict[str, Any]:
        return parse_message(payload, created=int(self._clock()), fallback_id=f"chatcmpl-{self._token_factory()}",
                             endpoint=endpoint, model=model)

    def stream_translator(self, model: str, *, endpoint: str | None = None, choices: int = 1) -> AnthropicStreamTranslator:
        return AnthropicStreamTranslator(model, f"chatcmpl-{self._token_factory()}", int(self._clock()), endpoint=endpoint)

    def error_from_status(
        self, status: int, body: bytes, retry_after: str | None, *, endpoint: str | None = None
    ) -> UpstreamError:
        return classify_error(status, body, retry_after, endpoint=endpoint)


def _messages(messages: list[Any], notes: list[str]) -> tuple[str, list[dict[str, Any]]]:
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role in ("system", "developer"):
            if turns:
                notes.append(f"anthropic: messages[{i}] ({role}) moved into the top-level system prompt")
            system.append(content_text(message.get("content"), f"messages[{i}].content"))
        elif role == "user":
            _append(turns, "user", _user_blocks(message.get("content"), f"messages[{i}].content"))
        elif role == "assistant":
            _append(turns, "assistant", _assistant_blocks(message, i))
        elif role == "tool":
            _append(turns, "user", [_tool_result(message, i)])
        else:
            raise InvalidRequest(f"role '{role}' is not supported for anthropic endpoints", param=f"messages[{i}].role")
    if not turns:
        raise InvalidRequest("anthropic endpoints need at least one user or assistant message", param="messages")
    _strip_prefill(turns[-1])
    return "\n\n".join(s for s in system if s), [_compact(turn) for turn in turns]


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if not blocks:
        return  # Anthropic refuses empty turns; an empty message carries nothing anyway
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _compact(turn: dict[str, Any]) -> dict[str, Any]:
    blocks = turn["content"]
    if len(blocks) == 1 and blocks[0]["type"] == "text":
        return {"role": turn["role"], "content": blocks[0]["text"]}
    return turn


def _strip_prefill(turn: dict[str, Any]) -> None:
    if turn["role"] != "assistant" or turn["content"][-1]["type"] != "text":
        return
    last = turn["content"][-1]
    last["text"] = last["text"].rstrip()
    if not last["text"]:
        turn["content"].pop()


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str) or content is None:
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"'{where}' must be a string or a list of content parts", param=where)
    blocks = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image_block(part.get("image_url"), f"{where}[{i}]"))
        else:
            raise InvalidRequest(f"content part type '{kind}' is not supported for anthropic endpoints", param=f"{where}[{i}]")
    return blocks


def _image_block(image: Any, where: str) -> dict[str, Any]:
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str):
        raise InvalidRequest(f"'{where}.image_url.url' is required", param=where)
    inline = data_url(url, where)
    if inline is None:
        return {"type": "image", "source": {"type": "url", "url": url}}
    media_type, data = inline
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _assistant_blocks(message: dict[str, Any], i: int) -> list[dict[str, Any]]:
    text = content_text(message.get("content"), f"messages[{i}].content")
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for j, call in enumerate(message.get("tool_calls") or []):
        call_id, name, arguments = tool_arguments(call, f"messages[{i}].tool_calls[{j}]")
        blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": arguments})
    return blocks


def _tool_result(message: dict[str, Any], i: int) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(f"'messages[{i}].tool_call_id' is required", param=f"messages[{i}].tool_call_id")
    text = content_text(message.get("content"), f"messages[{i}].content")
    return {"type": "tool_result", "tool_use_id": call_id, "content": text}


def _sampling(request: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    temperature = request.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or temperature < 0:
            raise InvalidRequest("'temperature' must be a non-negative number", param="temperature")
        if temperature > MAX_TEMPERATURE:
            notes.append(f"anthropic: temperature {temperature} clamped to {MAX_TEMPERATURE}")
        out["temperature"] = min(temperature, MAX_TEMPERATURE)
    if request.get("top_p") is not None:
        out["top_p"] = request["top_p"]
    stop = request.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    return out


def _tools(request: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    functions, choice = declared_tools(request, "anthropic", notes)
    if not functions:
        return {}
    tools = []
    for function in functions:
        tool: dict[str, Any] = {"name": function["name"]}
        if function.get("description"):
            tool["description"] = function["description"]
        tool["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
        if function.get("strict"):
            notes.append(f"anthropic: dropped 'strict' of tool '{function['name']}'")
        tools.append(tool)
    out: dict[str, Any] = {"tools": tools}
    anthropic_choice: dict[str, Any] | None = None
    if choice is not None:
        anthropic_choice = (
            {"type": "tool", "name": choice.function} if choice.mode == "function" else {"type": _CHOICE_TYPES[choice.mode]}
        )
    if request.get("parallel_tool_calls") is False and (anthropic_choice or {}).get("type") != "none":
        anthropic_choice = {**(anthropic_choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    if anthropic_choice is not None:
        out["tool_choice"] = anthropic_choice
    return out
