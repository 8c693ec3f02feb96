"""One ``TurnRecord`` as one line of JSON, for the write-ahead log.

``encode_record`` gives the bytes of one line (ending in ``\\n``, no other
newline: JSON escapes them inside strings); ``decode_record`` reads one
back. ``timestamp`` travels as ISO 8601, ``attempts`` as lists of
``[endpoint, outcome, duration_s, http_status]``. Unknown keys (a log
written by another version) are ignored, missing ones take the record's
defaults. ``ensure_ascii`` keeps lone surrogates encodable.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

from nemo_turnlog.record import AttemptRecord, TurnRecord

__all__ = ["decode_record", "encode_record"]

_FIELDS = tuple(f.name for f in dataclasses.fields(TurnRecord))
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)


def encode_record(record: TurnRecord) -> bytes:
    """The record as one JSON line, ``\\n``-terminated."""
    data = {name: getattr(record, name) for name in _FIELDS}
    data["timestamp"] = record.timestamp.isoformat()
    data["attempts"] = [[a.endpoint, a.outcome, a.duration_s, a.http_status] for a in record.attempts]
    return (_ENCODER.encode(data) + "\n").encode("ascii")


def decode_record(line: bytes | str) -> TurnRecord:
    """The record of one line; raises ``ValueError`` (or ``TypeError``) if
    the line is not one (a torn last line, say)."""
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("a WAL line must be a JSON object")
    fields = {name: data[name] for name in _FIELDS if name in data}
    fields["timestamp"] = datetime.fromisoformat(fields["timestamp"])
    fields["attempts"] = [AttemptRecord(*attempt) for attempt in fields.get("attempts", [])]
    return TurnRecord(**fields)
