"""OpenAI-compatible upstreams (OpenAI, vLLM, llama.cpp, the simulator...).

The request passes through with the endpoint's model id
(``router.openai_wire.upstream_body``), so nothing is dropped and there are
no notes. The stream is already OpenAI's: ``passthrough`` tells the caller
to forward the upstream bytes unchanged; the translator exists so code
written against the codec interface works for every provider (it returns
each chunk as parsed, and is done at ``[DONE]``).
"""

from __future__ import annotations

from typing import Any

from router.errors import UpstreamDisconnected, UpstreamError, UpstreamProtocolError
from router.openai_wire import MAX_CHOICES, upstream_body
from router.providers.base import as_dict, json_or_none, load_json_object, status_error
from router.sse import DONE_DATA, SSEEvent

__all__ = ["OpenAICodec", "OpenAIStreamTranslator"]


class OpenAICodec:
    """Bearer-token auth, ``{base_url}/chat/completions`` (base_url ends in ``/v1``)."""

    name = "openai"
    passthrough = True
    max_choices = MAX_CHOICES  # n passes through: the upstream returns every choice

    def path(self, model: str, stream: bool) -> str:
        return "/chat/completions"

    def headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        return headers

    def request_body(self, openai_request: dict[str, Any], model: str, stream: bool) -> tuple[bytes, list[str]]:
        if bool(openai_request.get("stream")) != stream:
            openai_request = {**openai_request, "stream": stream}  # the attempt decides, not the client
        return upstream_body(openai_request, model, stream=stream), []

    def parse_response(self, payload: bytes, *, endpoint: str | None = None, model: str | None = None) -> dict[str, Any]:
        completion = load_json_object(payload, "completion", endpoint)
        choices = completion.get("choices")
        if not isinstance(choices, list):
            raise UpstreamProtocolError("upstream completion has no choices", endpoint=endpoint)
        for i, choice in enumerate(choices):  # passed through as sent: check what the router reads back
            if not isinstance(choice, dict):
                raise UpstreamProtocolError(f"upstream completion's choices[{i}] is not a JSON object", endpoint=endpoint)
            as_dict(choice.get("message"), f"completion's choices[{i}].message", endpoint)
        return completion

    def stream_translator(self, model: str, *, endpoint: str | None = None, choices: int = 1) -> "OpenAIStreamTranslator":
        return OpenAIStreamTranslator(endpoint=endpoint)

    def error_from_status(
        self, status: int, body: bytes, retry_after: str | None, *, endpoint: str | None = None
    ) -> UpstreamError:
        # OpenAI's error.type / error.code say little the status does not
        # (insufficient_quota is a 429 either way), so the status decides.
        kind, detail = None, None
        payload = json_or_none(body)
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict):
            kind = error.get("code") or error.get("type")
            detail = error.get("message")
        return status_error(
            status,
            provider_type=kind if isinstance(kind, str) else None,
            detail=detail if isinstance(detail, str) else None,
            upstream_fault=None,
            retry_after_s=retry_after,
            endpoint=endpoint,
        )


class OpenAIStreamTranslator:
    """Parses each OpenAI chunk and hands it back as is; done at ``[DONE]``.

    Per event it checks only what it reads: ``choices`` an array of objects
    (``UpstreamProtocolError`` otherwise), ``finish_reason`` a string; a
    ``usage`` that is not an object reads as absent.
    """

    __slots__ = ("_endpoint", "_done", "usage", "finish_reason")

    def __init__(self, *, endpoint: str | None = None):
        self._endpoint = endpoint
        self._done = False
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, event: SSEEvent) -> list[dict[str, Any]]:
        if event.data is None or self._done:
            return []
        if event.data == DONE_DATA:
            self._done = True
            return []
        chunk = load_json_object(event.data, "stream event", self._endpoint)
        if "error" in chunk:
            raise UpstreamProtocolError("upstream sent an error event mid-stream", endpoint=self._endpoint)
        usage = chunk.get("usage")
        if usage and isinstance(usage, dict):
            self.usage = usage
        choices = chunk.get("choices")
        if choices:
            # The only per-event cost the checks add: two isinstance calls.
            if not isinstance(choices, list):
                raise self._malformed("choices is not a JSON array")
            for choice in choices:
                if not isinstance(choice, dict):
                    raise self._malformed("a choice is not a JSON object")
                reason = choice.get("finish_reason")
                if reason:
                    if not isinstance(reason, str):
                        raise self._malformed("finish_reason is not a string")
                    self.finish_reason = reason
        return [chunk]

    def _malformed(self, what: str) -> UpstreamProtocolError:
        return UpstreamProtocolError(f"upstream stream chunk: {what}", endpoint=self._endpoint)

    def finish(self) -> list[dict[str, Any]]:
        if not self._done:
            raise UpstreamDisconnected("upstream stream ended before [DONE]", endpoint=self._endpoint)
        return []
