"""Google's Gemini API (``v1beta``): ``models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse``, authenticated with ``x-goog-api-key``.

The request translation, OpenAI -> Gemini:

- ``system`` / ``developer`` messages -> ``systemInstruction``;
- ``user`` / ``assistant`` turns -> ``contents`` with roles user / model,
  consecutive same-role turns merged; images only as base64 ``data:`` URLs
  (``inlineData``), since Gemini cannot fetch arbitrary URLs;
- assistant ``tool_calls`` -> ``functionCall`` parts; ``tool`` messages ->
  ``functionResponse`` parts named after the earlier call with the same id
  (the reply is the tool's JSON object, else ``{"result": content}``);
- ``temperature``, ``top_p``, ``max_completion_tokens`` / ``max_tokens``,
  ``stop``, ``presence_penalty``, ``frequency_penalty``, ``seed`` and JSON
  ``response_format`` -> ``generationConfig``;
- ``tools`` -> one ``functionDeclarations`` tool (schemas passed as
  ``parametersJsonSchema``, i.e. JSON Schema as OpenAI clients write it);
  ``tool_choice`` auto / none / required / function ->
  ``toolConfig.functionCallingConfig`` AUTO / NONE / ANY / ANY restricted
  by ``allowedFunctionNames``.

Replies are read in ``gemini_response``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from router.errors import InvalidRequest, UpstreamError
from router.providers.gemini_response import GeminiStreamTranslator, classify_error, parse_generate_response
from router.providers.openai_request import (
    content_text,
    data_url,
    declared_tools,
    dropped_param_notes,
    encode_body,
    reject_meaning_changes,
    response_format_type,
    tool_arguments,
)

__all__ = ["GeminiCodec", "MAX_CANDIDATES"]

MAX_CANDIDATES = 8  # generationConfig.candidateCount's limit

_GENERATION = {
    "temperature": "temperature",
    "top_p": "topP",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
    "seed": "seed",
    "n": "candidateCount",
}
_TRANSLATED = frozenset(
    {*_GENERATION, "max_tokens", "max_completion_tokens", "stop", "response_format", "tools", "tool_choice",
     "parallel_tool_calls"}
)
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "function": "ANY"}
_ROLES = {"user": "user", "tool": "user", "assistant": "model"}


def _random_token() -> str:
    return secrets.token_hex(12)


class GeminiCodec:
    """OpenAI chat requests to Gemini ``generateContent``, and its replies back.

    ``token_factory`` gives the unique suffix of ids the router makes up
    (completion ids, tool-call ids); ``clock`` gives ``created`` (wall
    clock, s). Both injectable for reproducible tests.
    """

    name = "gemini"
    passthrough = False
    # n becomes candidateCount (Gemini allows 1 to 8); each candidate is the
    # choice of its index, whole and streamed (``gemini_response``).
    max_choices = MAX_CANDIDATES

    def __init__(self, *, token_factory: Callable[[], str] = _random_token, clock: Callable[[], float] = time.time):
        self._token_factory = token_factory
        self._clock = clock

    def path(self, model: str, stream: bool) -> str:
        model = model.removeprefix("models/")
        return f"/v1beta/models/{model}:streamGenerateContent?alt=sse" if stream else f"/v1beta/models/{model}:generateContent"

    def headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if api_key:
            headers["x-goog-api-key"] = api_key
        return headers

    def request_body(self, openai_request: dict[str, Any], model: str, stream: bool) -> tuple[bytes, list[str]]:
        reject_meaning_changes(openai_request, self.name, json_formats=True, max_choices=self.max_choices)
        notes = dropped_param_notes(openai_request, self.name, _TRANSLATED)
        system, contents = _contents(openai_request.get("messages") or [], notes)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        config = _generation_config(openai_request)
        if config:
            body["generationConfig"] = config
        body.update(_tools(openai_request, notes))
        return encode_body(body), notes

    def parse_response(self, payload: bytes, *, endpoint: str | None = None, model: str | None = None) -> dict[str, Any]:
        return parse_generate_response(payload, model=model, created=int(self._clock()),
                                       new_token=self._token_factory, endpoint=endpoint)

    def stream_translator(self, model: str, *, endpoint: str | None = None, choices: int = 1) -> GeminiStreamTranslator:
        return GeminiStreamTranslator(model, self._token_factory, int(self._clock()), endpoint=endpoint, choices=choices)

    def error_from_status(
        self, status: int, body: bytes, retry_after: str | None, *, endpoint: str | None = None
    ) -> UpstreamError:
        return classify_error(status, body, retry_after, endpoint=endpoint)


def _contents(messages: list[Any], notes: list[str]) -> tuple[str, list[dict[str, Any]]]:
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}  # tool_call id -> function name
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role in ("system", "developer"):
            if contents:
                notes.append(f"gemini: messages[{i}] ({role}) moved into systemInstruction")
            system.append(content_text(message.get("content"), f"messages[{i}].content"))
            continue
        if role == "user":
            parts = _user_parts(message.get("content"), f"messages[{i}].content")
        elif role == "assistant":
            parts = _model_parts(message, i, call_names)
        elif role == "tool":
            parts = [_function_response(message, i, call_names)]
        else:
            raise InvalidRequest(f"role '{role}' is not supported for gemini endpoints", param=f"messages[{i}].role")
        _append(contents, _ROLES[role], parts)
    if not contents:
        raise InvalidRequest("gemini endpoints need at least one user or assistant message", param="messages")
    return "\n\n".join(s for s in system if s), contents


def _append(contents: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    if not parts:
        return
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def _user_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str) or content is None:
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"'{where}' must be a string or a list of content parts", param=where)
    parts = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
            inline = data_url(url, f"{where}[{i}]") if isinstance(url, str) else None
            if inline is None:
                raise InvalidRequest("gemini endpoints take images as base64 data: URLs only", param=f"{where}[{i}]")
            parts.append({"inlineData": {"mimeType": inline[0], "data": inline[1]}})
        else:
            raise InvalidRequest(f"content part type '{kind}' is not supported for gemini endpoints", param=f"{where}[{i}]")
    return parts


def _model_parts(message: dict[str, Any], i: int, call_names: dict[str, str]) -> list[dict[str, Any]]:
    text = content_text(message.get("content"), f"messages[{i}].content")
    parts: list[dict[str, Any]] = [{"text": text}] if text else []
    for j, call in enumerate(message.get("tool_calls") or []):
        call_id, name, arguments = tool_arguments(call, f"messages[{i}].tool_calls[{j}]")
        call_names[call_id] = name
        parts.append({"functionCall": {"name": name, "args": arguments}})
    return parts


def _function_response(message: dict[str, Any], i: int, call_names: dict[str, str]) -> dict[str, Any]:
    name = call_names.get(message.get("tool_call_id") or "")
    if name is None:
        raise InvalidRequest(
            f"'messages[{i}].tool_call_id' matches no earlier assistant tool call", param=f"messages[{i}].tool_call_id"
        )
    text = content_text(message.get("content"), f"messages[{i}].content")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # not JSON the router can read: sent as text
        value = text
    return {"functionResponse": {"name": name, "response": value if isinstance(value, dict) else {"result": value}}}


def _generation_config(request: dict[str, Any]) -> dict[str, Any]:
    config = {field: request[key] for key, field in _GENERATION.items() if request.get(key) is not None}
    if config.get("candidateCount") == 1:
        del config["candidateCount"]  # the default
    for key in ("max_completion_tokens", "max_tokens"):
        if request.get(key) is not None:
            config["maxOutputTokens"] = request[key]
            break
    stop = request.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if response_format_type(request) in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        json_schema = request["response_format"].get("json_schema")
        schema = json_schema.get("schema") if isinstance(json_schema, dict) else None
        if isinstance(schema, dict):
            config["responseJsonSchema"] = schema
    return config


def _tools(request: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    functions, choice = declared_tools(request, "gemini", notes)
    if not functions:
        return {}
    declarations = []
    for function in functions:
        declaration: dict[str, Any] = {"name": function["name"]}
        if function.get("description"):
            declaration["description"] = function["description"]
        if function.get("parameters"):
            declaration["parametersJsonSchema"] = function["parameters"]
        declarations.append(declaration)
    out: dict[str, Any] = {"tools": [{"functionDeclarations": declarations}]}
    if request.get("parallel_tool_calls") is False:
        notes.append("gemini: dropped 'parallel_tool_calls: false' (not supported)")
    if choice is not None:
        config: dict[str, Any] = {"mode": _MODES[choice.mode]}
        if choice.function:
            config["allowedFunctionNames"] = [choice.function]
        out["toolConfig"] = {"functionCallingConfig": config}
    return out
