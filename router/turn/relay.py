"""Relays: what a turn forwards from one upstream stream.

``PassThroughRelay`` is the hot path for OpenAI-compatible upstreams: each
event's raw bytes go out unchanged, read once by the ``StreamWatch`` (but
for the usage-only chunk the watch noted, re-encoded once a turn).
``ContinuationRelay`` carries a turn over after a mid-stream failure: it
re-encodes the new upstream's chunks under the original chunk id, drops
its role preamble, and splices its text onto what was already sent
(``router.continuation.Seam``). Both return, per network read, the bytes to
forward (events that arrived together leave together).

What a relay counts as forwarded is exactly what its ``feed`` returned: an
event that fails part-way through a read ends the read there, the events
before it are returned (and counted), and the failure waits in ``failure``
for the turn to raise once those bytes are on their way. So a continuation
starts exactly after the last word the client was handed, never after a word
that was thrown away with a failed read.
"""

from __future__ import annotations

import json

from router.continuation import Seam
from router.errors import UpstreamError, UpstreamProtocolError
from router.sse import DONE_DATA, DONE_EVENT, SSEDecoder, encode_json
from router.stream_watch import StreamWatch

__all__ = ["PassThroughRelay", "ContinuationRelay"]


class PassThroughRelay:
    __slots__ = ("watch", "failure", "_decoder")

    def __init__(self, watch: StreamWatch):
        self.watch = watch
        self.failure: UpstreamError | None = None  # set by the read that failed
        self._decoder = SSEDecoder()

    def feed(self, raw: bytes) -> bytes:
        watch = self.watch
        accept = watch.accept
        out = []
        try:
            for event in self._decoder.feed(raw):
                if accept(event):
                    if watch.noted_chunk is None:
                        out.append(event.raw)
                    else:  # the usage-only chunk, with the router's note: once a turn
                        out.append(encode_json(watch.noted_chunk))
                        watch.noted_chunk = None
        except UpstreamError as error:
            self.failure = error
        return b"".join(out)

    @property
    def forwarded_text(self) -> str:
        return self.watch.text


class ContinuationRelay:
    def __init__(self, watch: StreamWatch, seam: Seam, chunk_id: str | None):
        self.watch = watch
        self.failure: UpstreamError | None = None  # set by the read that failed
        self._seam = seam
        self._chunk_id = chunk_id
        self._decoder = SSEDecoder()
        self._forwarded: list[str] = []
        self._template: dict | None = None

    @property
    def forwarded_text(self) -> str:
        return "".join(self._forwarded)

    def feed(self, raw: bytes) -> bytes:
        out: list[bytes] = []
        try:
            for event in self._decoder.feed(raw):
                piece = self._event(event)
                if piece:
                    out.append(piece)
        except UpstreamError as error:
            self.failure = error
        return b"".join(out)

    def _event(self, event) -> bytes:
        if event.data is None:
            return b""
        if event.data == DONE_DATA:
            self.watch.done = True
            return self._flush_seam() + DONE_EVENT
        try:
            chunk = json.loads(event.data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UpstreamProtocolError("upstream sent a malformed stream event", endpoint=self.watch.endpoint) from exc
        if not isinstance(chunk, dict) or not self.watch.accept_chunk(chunk):
            return b""
        self.watch.noted_chunk = None  # the note, if any, is in ``chunk``, re-encoded below
        return self._rewrite(chunk)

    def _rewrite(self, chunk: dict) -> bytes:
        if self._chunk_id:
            chunk["id"] = self._chunk_id
        if self._template is None:
            self._template = {k: v for k, v in chunk.items() if k not in ("choices", "usage")}
        choices = chunk.get("choices")
        if not choices:
            return encode_json(chunk)
        choice = choices[0]
        delta = choice.get("delta") or {}
        delta.pop("role", None)  # the client already had the role
        prefix = b""
        if choice.get("finish_reason"):
            prefix = self._flush_seam()
        if delta.get("content"):
            delta["content"] = self._seam.feed(delta["content"])
            self._forwarded.append(delta["content"])
        if not delta.get("content") and not delta.get("tool_calls") and not choice.get("finish_reason"):
            return prefix
        choice["delta"] = delta
        return prefix + encode_json(chunk)

    def _flush_seam(self) -> bytes:
        held = self._seam.flush()
        if not held:
            return b""
        self._forwarded.append(held)
        chunk = {**(self._template or {"object": "chat.completion.chunk"}), "id": self._chunk_id}
        chunk["choices"] = [{"index": 0, "delta": {"content": held}, "finish_reason": None}]
        return encode_json(chunk)
