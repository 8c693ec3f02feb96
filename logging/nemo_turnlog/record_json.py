"""Turn records as JSON lines, for the write-ahead log.

A WAL segment starts with ``HEADER``, a JSON object naming the record's
fields in order; every other line is one record as a JSON array of those
fields' values (``encode_record``): half the bytes and about half the
encoding time of an object with keys, on the turn's path. ``decode_record``
reads a line back given the header's field names, so a segment written by
another version still reads: unknown fields are ignored, missing ones take
the record's defaults. ``timestamp`` travels as ISO 8601, ``attempts`` as
``[endpoint, outcome, duration_s, http_status]``. JSON escapes newlines
inside strings and ``ensure_ascii`` keeps lone surrogates encodable, so a
record is always exactly one line.
"""

from __future__ import annotations

import dataclasses
import json
import operator
from collections.abc import Sequence
from datetime import datetime

from nemo_turnlog.record import AttemptRecord, TurnRecord

__all__ = ["FIELDS", "HEADER", "decode_header", "decode_record", "encode_record"]

FIELDS = tuple(f.name for f in dataclasses.fields(TurnRecord))
HEADER = (json.dumps({"nemo_turnlog_wal": 1, "fields": FIELDS}) + "\n").encode("ascii")
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode
_VALUES = operator.attrgetter(*FIELDS)
_TIMESTAMP = FIELDS.index("timestamp")
_ATTEMPTS = FIELDS.index("attempts")
_KNOWN = frozenset(FIELDS)


def encode_record(record: TurnRecord) -> bytes:
    """The record as one JSON array line, ``\\n``-terminated."""
    values = list(_VALUES(record))
    values[_TIMESTAMP] = record.timestamp.isoformat()
    values[_ATTEMPTS] = [(a.endpoint, a.outcome, a.duration_s, a.http_status) for a in record.attempts]
    return (_ENCODE(values) + "\n").encode("ascii")


def decode_header(line: bytes | str) -> tuple[str, ...] | None:
    """The field names if ``line`` is a segment header, else None."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("fields"), list):
        return tuple(data["fields"])
    return None


def decode_record(line: bytes | str, fields: Sequence[str] = FIELDS) -> TurnRecord:
    """The record of one line; raises ``ValueError`` (or ``TypeError``,
    ``KeyError``) if the line is not one (a torn last line, say)."""
    values = json.loads(line)
    if not isinstance(values, list) or len(values) != len(fields):
        raise ValueError("a WAL record line must be a JSON array with one value per field")
    known = {name: value for name, value in zip(fields, values, strict=True) if name in _KNOWN}
    known["timestamp"] = datetime.fromisoformat(known["timestamp"])
    known["attempts"] = [AttemptRecord(*attempt) for attempt in known.get("attempts", [])]
    return TurnRecord(**known)
