"""Server-sent events: an incremental decoder and the few encoders we need.

The decoder is on the per-chunk hot path of every streaming turn, so it
works on bytes, splits on the blank line that ends an event, and keeps each
event's raw bytes: a pass-through stream forwards them unchanged instead of
re-encoding (the WHATWG SSE grammar, restricted to what LLM APIs send:
``data:``, ``event:`` and comment lines, LF or CRLF line ends).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["SSEEvent", "SSEDecoder", "encode_data", "encode_json", "DONE_EVENT", "DONE_DATA"]

DONE_DATA = b"[DONE]"
DONE_EVENT = b"data: [DONE]\n\n"


@dataclass(slots=True, frozen=True)
class SSEEvent:
    """One complete event. ``raw`` ends with the blank line; ``data`` is the
    joined ``data:`` payload (``None`` for comment-only events)."""

    raw: bytes
    data: bytes | None
    event: str | None = None


class SSEDecoder:
    """Feed bytes as they arrive; get back each event once it is complete.

    A partial event stays buffered until its terminating blank line arrives.
    ``pending`` tells whether bytes of an unfinished event are held.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    @property
    def pending(self) -> bool:
        return bool(self._buffer.strip())

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        events: list[SSEEvent] = []
        start = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            raw = buffer[start : end + 2]
            start = end + 2
            event = _parse_event(raw)
            if event is not None:
                events.append(event)
        self._buffer = buffer[start:]
        return events


def _parse_event(raw: bytes) -> SSEEvent | None:
    # Fast path: the overwhelmingly common single-line ``data: ...`` event.
    if raw.startswith(b"data:") and raw.count(b"\n") == 2:
        payload = raw[5:-2]
        return SSEEvent(raw, payload[1:] if payload.startswith(b" ") else payload)
    data_lines: list[bytes] = []
    event_name: str | None = None
    for line in raw.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data_lines.append(value)
        elif field == b"event":
            event_name = value.decode("utf-8", "replace")
    if not data_lines and event_name is None:
        return None if not raw.strip() else SSEEvent(raw, None)
    return SSEEvent(raw, b"\n".join(data_lines) if data_lines else None, event_name)


def encode_data(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def encode_json(obj: object) -> bytes:
    return encode_data(json.dumps(obj, separators=(",", ":")).encode())
