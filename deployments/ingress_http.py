"""What the ingress reads from HTTP and writes back besides the turn's
bytes: request ids, tags, the body within its limits, a handle caller's
dict, serving headers, and the APIs it does not serve (``deployments.ingress``)."""

from __future__ import annotations

import asyncio
import json
import uuid

from fastapi import Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from router.config import ServerConfig
from router.conversation import CONVERSATION_HEADER, CONVERSATION_TURN_HEADER, conversation_of
from router.errors import InvalidRequest, PayloadTooLarge, RequestTimeout
from router.openai_wire import drop_client_overrides, parse_chat_request, request_id_from_header
from router.tags import parse_tags
from router.turn import TurnHead, TurnRequest

__all__ = [
    "NOT_SERVED", "SSE_HEADERS", "handle_body", "new_request_id", "not_served", "read_body",
    "request_id_of", "requested_tags", "turn_headers", "with_headers",
]

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}

# OpenAI APIs clients may try that this router does not serve: a clear 404
# in OpenAI's format rather than the bare "Not Found" of an unknown path.
NOT_SERVED = {
    "/v1/completions": "legacy text completions",
    "/v1/embeddings": "embeddings",
}

def turn_headers(turn: TurnRequest, head: TurnHead, plan_s: float, first_item_s: float) -> dict[str, str]:
    """Serving headers, with the router's own time split out (W3C Server-Timing,
    ms): ``plan`` the tracker call, ``dispatch`` ingress to caller, ``upstream``
    the served attempt's time to first token, ``relay`` what is left of the
    wait for the first item (the caller's work and the trip back)."""
    dispatch_s = max(0.0, head.caller_received_at - turn.received_at - plan_s)
    relay_s = max(0.0, first_item_s - dispatch_s - head.upstream_ttft_s)
    timing = (
        f"plan;dur={plan_s * 1000:.2f}, dispatch;dur={dispatch_s * 1000:.2f}, "
        f"upstream;dur={head.upstream_ttft_s * 1000:.2f}, relay;dur={relay_s * 1000:.2f}"
    )
    headers = {"x-nemo-endpoint": head.endpoint, "x-nemo-provider": head.provider, "server-timing": timing}
    if head.cost_usd is not None:  # a non-streamed turn on a priced endpoint (a stream's is in its usage chunk)
        headers["x-nemo-cost-usd"] = f"{head.cost_usd:.10g}"
    if turn.conversation_id is not None:
        headers[CONVERSATION_HEADER] = turn.conversation_id
        if turn.conversation_turn is not None:
            headers[CONVERSATION_TURN_HEADER] = str(turn.conversation_turn)
    return headers


def requested_tags(header: str | None, raw: dict, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    body = raw.get("nemo_tags")
    requested = {*parse_tags(header, param="x-nemo-tags"), *parse_tags(body, param="nemo_tags"), *parse_tags(list(extra))}
    return tuple(sorted(requested))


def not_served(path: str) -> StarletteHTTPException:
    """The 404 of an OpenAI API this router does not serve (``NOT_SERVED``)."""
    return StarletteHTTPException(
        404,
        f"{path} ({NOT_SERVED[path]}) is not served: nemo-router is a voice gateway for chat completions;"
        " use /v1/chat/completions",
    )


def with_headers(response: Response, headers: dict[str, str]) -> Response:
    response.headers.update(headers)
    return response


def new_request_id() -> str:
    return f"nemo-{uuid.uuid4().hex}"


def request_id_of(request: Request) -> str:
    # The client's x-request-id, if it is a sane one (at most 128 visible
    # ASCII characters: it lands in the turn log and in logs), else a new one.
    return request_id_from_header(request.headers.get("x-request-id")) or new_request_id()


def handle_body(body: dict, stream: bool) -> tuple:
    """A handle caller's dict, checked like an HTTP body (and one too deep
    to serialise is the caller's 400, not the router's 500)."""
    try:
        encoded = json.dumps({**body, "stream": stream}).encode()
    except (RecursionError, ValueError, TypeError) as exc:
        raise InvalidRequest(f"the request body cannot be read as JSON ({type(exc).__name__})") from None
    chat, raw = parse_chat_request(encoded)
    notes = tuple(drop_client_overrides(raw))
    conversation, conversation_notes = conversation_of(None, None, raw)
    return chat, raw, notes + tuple(conversation_notes), conversation


async def read_body(request: Request, server: ServerConfig) -> bytes:
    """The whole body, within ``server.max_body_bytes`` and
    ``server.body_read_timeout_s`` (a body announced and never sent is a
    408, not a connection held open)."""
    limit = server.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes")
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(server.body_read_timeout_s):
            async for part in request.stream():
                parts.append(part)
                size += len(part)
                if size > limit:
                    raise PayloadTooLarge(f"request body exceeds {limit} bytes")
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {server.body_read_timeout_s:g} s") from None
    return b"".join(parts)
