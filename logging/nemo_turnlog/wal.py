"""A write-ahead log of turn records, so a killed replica loses none.

Every record a ``TurnLogWriter`` accepts is appended, before ``emit``
returns, to the current *segment*: a file in a local folder, one JSON line
per record after a header line (``record_json``), written with one ``write`` call on a file
opened with ``O_APPEND``. At each flush the writer seals the segment (the
next record opens a new one), writes exactly that segment's records to the
sink as one batch named after the segment's *stem*, and removes the segment
once the sink has it.

What this guarantees: a record survives the death of its process (SIGKILL,
OOM, a crash), because the kernel keeps what ``write`` was given. There is
no ``fsync`` per record (it would cost milliseconds on the turn's path), so
a machine crash or power loss can still lose the last seconds of records
(and may leave a torn last line, which replay skips and counts).

File names say who owns a segment::

    <host>+<pid>+<process start, 1/100 s>+<stem>.wal

``claim_orphans`` finds segments whose owner is gone (same host, and no
process with that pid *and* that start time: a reused pid is a different
process) and claims each by renaming it to its own owner prefix. A rename
is atomic, so when several replicas start at once each orphan goes to
exactly one; a claimer that dies in turn leaves the file under its own
name, for the next one. The stem never changes, so a segment replayed
after a crash between the sink's write and the removal is written again
under the same name: the sink overwrites, it does not duplicate.

Segments of other hosts are left alone (their pids mean nothing here), so
a folder shared between nodes is safe, if pointless.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from nemo_turnlog.record import TurnRecord
from nemo_turnlog.record_json import FIELDS, HEADER, decode_header, decode_record

__all__ = ["ProcessIdentity", "Segment", "WriteAheadLog", "process_alive", "read_segment"]

logger = logging.getLogger(__name__)

SUFFIX = ".wal"
_STEM = r"[A-Za-z0-9][A-Za-z0-9_.-]*"  # a plain file-name part: it names the batch's Parquet files
_NAME = re.compile(rf"(?P<host>[A-Za-z0-9.-]+)\+(?P<pid>\d+)\+(?P<start>\d+)\+(?P<stem>{_STEM})\.wal")


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """A process on a host: its pid and its start time (in 1/100 s since
    the epoch, as ``psutil`` reports it), which together survive pid reuse."""

    host: str
    pid: int
    start_cs: int

    @classmethod
    def current(cls) -> "ProcessIdentity":
        return cls(_host(), os.getpid(), _start_cs(psutil.Process()))

    @property
    def prefix(self) -> str:
        return f"{self.host}+{self.pid}+{self.start_cs}+"


@dataclass(frozen=True, slots=True)
class Segment:
    """One WAL file: ``path`` on disk and ``stem``, the name its batch gets."""

    path: Path
    stem: str


def process_alive(owner: ProcessIdentity) -> bool:
    """Whether ``owner`` still runs on this host (a zombie does not)."""
    try:
        process = psutil.Process(owner.pid)
        return _start_cs(process) == owner.start_cs and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # someone else's process: alive, and not ours to judge
        return True


class WriteAheadLog:
    """The segments of one writer under ``root`` (created if missing).

    ``writer_id`` starts every stem (``<writer_id>-<seq:06d>``); it must be
    unique per writer (the caller's replica id is) and a plain file-name
    part without ``+``. ``owner`` (default: this process) and ``is_alive``
    are injectable for tests. Not thread-safe: the writer calls ``append``
    and ``rotate`` under its own lock.
    """

    def __init__(
        self,
        root: str | Path,
        writer_id: str,
        *,
        owner: ProcessIdentity | None = None,
        is_alive: Callable[[ProcessIdentity], bool] = process_alive,
    ):
        if not re.fullmatch(_STEM, writer_id):
            raise ValueError(f"writer_id must be a plain file-name part, got {writer_id!r}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.owner = owner or ProcessIdentity.current()
        self._writer_id = writer_id
        self._is_alive = is_alive
        self._seq = 0
        self._fd: int | None = None
        self._current: Segment | None = None
        self._claim_lock = threading.Lock()

    def append(self, line: bytes) -> None:
        """Append one record's line to the current segment (opening it on
        the first record); one ``write`` call, raises ``OSError``."""
        if self._fd is None:
            self._current = self._segment(f"{self._writer_id}-{self._seq:06d}")
            self._seq += 1
            self._fd = os.open(self._current.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            line = HEADER + line  # still one write
        written = os.write(self._fd, line)
        if written != len(line):  # only on a full disk; the rest would tear the line
            raise OSError(f"short write to the WAL ({written} of {len(line)} bytes)")

    def rotate(self) -> Segment | None:
        """Seal the current segment and return it (None if nothing was
        appended since the last rotation); the next record opens a new one."""
        segment, fd = self._current, self._fd
        self._current = self._fd = None
        if fd is not None:
            os.close(fd)
        return segment

    def remove(self, segment: Segment) -> None:
        """Forget a segment whose records the sink has; never raises."""
        try:
            segment.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.warning("turn log: could not remove WAL segment %s (%s)", segment.path.name, type(exc).__name__)

    def close(self) -> None:
        """Close the open segment; keep it on disk only if it holds records."""
        segment = self.rotate()
        if segment is not None and _size(segment.path) == 0:
            self.remove(segment)

    def claim_orphans(self) -> list[Segment]:
        """Rename this host's segments whose owner is gone to ours; the
        claimed segments, oldest first (by modification time, then name)."""
        with self._claim_lock:
            claimed, verdicts = [], {}
            for path in sorted(self.root.glob("*" + SUFFIX), key=_age):
                match = _NAME.fullmatch(path.name)
                if match is None:
                    continue
                owner = ProcessIdentity(match["host"], int(match["pid"]), int(match["start"]))
                if owner == self.owner or owner.host != self.owner.host:
                    continue
                if owner not in verdicts:
                    verdicts[owner] = self._is_alive(owner)
                if verdicts[owner]:
                    continue
                segment = self._segment(match["stem"])
                try:
                    os.rename(path, segment.path)
                except FileNotFoundError:  # another replica claimed it first
                    continue
                claimed.append(segment)
            return claimed

    def _segment(self, stem: str) -> Segment:
        return Segment(self.root / f"{self.owner.prefix}{stem}{SUFFIX}", stem)

    def __repr__(self) -> str:
        return f"WriteAheadLog(root={str(self.root)!r}, writer_id={self._writer_id!r})"


def read_segment(segment: Segment) -> tuple[list[TurnRecord], int]:
    """The segment's records, and how many lines were not records (a torn
    last line after a machine crash); ``OSError`` if it cannot be read."""
    records, bad = [], 0
    lines = segment.path.read_bytes().splitlines()
    fields = decode_header(lines[0]) if lines else None
    for line in lines[1:] if fields is not None else lines:
        if not line.strip():
            continue
        try:
            records.append(decode_record(line, fields or FIELDS))
        except (ValueError, TypeError, KeyError):
            bad += 1
    return records, bad


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "localhost"


def _start_cs(process: psutil.Process) -> int:
    return round(process.create_time() * 100)


def _age(path: Path) -> tuple[int, str]:
    try:
        return path.stat().st_mtime_ns, path.name
    except FileNotFoundError:
        return 0, path.name


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
