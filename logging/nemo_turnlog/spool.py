"""At-least-once delivery to S3: a local spool for what S3 did not take.

``SpoolingSink`` wraps an ``S3ParquetSink``. Each batch is encoded once into
per-partition Parquet objects; each object goes to S3, or, when S3 refuses
or cannot be reached, into the ``Spool``: a local folder holding the object
as a file at its S3 key (``spool/dt=.../hour=.../<name>.parquet``, readable
with ``read_turn_log`` too). Either way the batch counts as written for the
``TurnLogWriter``. ``retry_spooled`` (the writer calls it after every flush)
uploads spooled files oldest-first and deletes each only once S3 has it.

What can be lost or doubled:

- Without a WAL, a crash loses the writer's unflushed buffer: up to
  ``flush_max_records`` records or ``flush_interval_s`` seconds of turns,
  plus what arrives while one S3 call hangs (bounded by the client's
  timeouts, ``s3_client``: 3 attempts of 2 s to connect and 15 s to read,
  and by the writer's ``max_buffer_records``). With one (``wal``, the
  router's default) the death of the process loses nothing: the next
  writer on the node replays the buffer under the same object names.
  Spool files are fsynced before ``write`` returns.
- A spooled object is uploaded under its original key, so uploading it
  twice (a crash between upload and delete, two replicas draining one
  spool) overwrites, never duplicates.
- Rows are stored twice only when S3 took part of a batch and the spool
  then failed too (disk full): the writer retries the whole batch under a
  new name. Duplicates share their ``request_id``.
- Past ``max_spool_bytes`` the oldest spooled files are deleted, counted
  and logged: the spool never fills the disk.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from nemo_turnlog.record import TurnRecord
from nemo_turnlog.s3_client import TurnLogS3Error
from nemo_turnlog.s3_sink import PartitionObject, S3ParquetSink

__all__ = ["Spool", "SpoolingSink"]

logger = logging.getLogger(__name__)


class Spool:
    """Parquet objects waiting for S3, as files under ``root`` at their key.

    Files are written under a hidden name, fsynced and renamed into place,
    so a listed file is always complete. The folder, not memory, is the
    state: a restarted replica (or another one sharing the folder) finds
    what an earlier one left behind.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def save(self, obj: PartitionObject) -> Path:
        path = self.root / obj.key
        path.parent.mkdir(parents=True, exist_ok=True)
        hidden = path.with_name("." + path.name)
        with open(hidden, "wb") as file:
            file.write(obj.body)
            file.flush()
            os.fsync(file.fileno())
        os.replace(hidden, path)
        return path

    def pending(self) -> list[Path]:
        """Spooled files, oldest first (by modification time, then name)."""
        files = []
        for path in self.root.rglob("*.parquet"):
            if path.name.startswith((".", "_")):
                continue
            try:
                files.append((path.stat().st_mtime_ns, path))
            except FileNotFoundError:  # uploaded by someone else meanwhile
                continue
        return [path for _, path in sorted(files)]

    def key(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def remove(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            return
        for folder in (path.parent, path.parent.parent):  # hour=, then dt=
            if folder == self.root:
                break
            try:
                folder.rmdir()
            except OSError:  # not empty: other files still wait there
                break

    def size_bytes(self, files: Sequence[Path]) -> int:
        return sum(_size(path) for path in files)


class SpoolingSink:
    """An ``S3ParquetSink`` that spools what S3 does not take (module docstring).

    Defaults: ``max_spool_bytes=1 GiB`` of spooled Parquet; at most
    ``max_files_per_retry=100`` uploads per ``retry_spooled`` call, so one
    call never holds the writer's thread for long. After an S3 failure, S3
    counts as down for ``retry_backoff_s=30.0`` seconds (by ``clock``):
    writes go straight to the spool and ``retry_spooled`` does nothing, so a
    dead endpoint costs one timeout per backoff, not one per flush.

    ``write`` raises only when the spool itself cannot be written; the
    writer then keeps the records in memory and retries. ``close`` tries
    the whole spool once more, ignoring the backoff, then closes the S3 sink.
    """

    def __init__(
        self,
        sink: S3ParquetSink,
        spool_dir: str | Path,
        *,
        max_spool_bytes: int = 1 << 30,
        max_files_per_retry: int = 100,
        retry_backoff_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_spool_bytes <= 0 or max_files_per_retry <= 0 or retry_backoff_s < 0:
            raise ValueError("max_spool_bytes and max_files_per_retry must be positive, retry_backoff_s not negative")
        self.sink = sink
        self.spool = Spool(spool_dir)
        self._max_bytes = max_spool_bytes
        self._max_files = max_files_per_retry
        self._backoff_s = retry_backoff_s
        self._clock = clock
        self._down_until: float | None = None  # None: S3 is taken to be up
        self._lock = threading.RLock()
        counters = ("uploaded", "spooled", "spool_uploaded", "spool_dropped", "spool_dropped_rows", "spool_corrupt")
        self._counts = dict.fromkeys((*counters, "s3_errors"), 0)

    def write(self, batch: pa.Table | Sequence[TurnRecord], name: str | None = None) -> None:
        with self._lock:
            spooled = False
            for obj in self.sink.encode(batch, name):
                if self._s3_up() and self._put(obj):
                    self._counts["uploaded"] += 1
                    continue
                self.spool.save(obj)
                self._counts["spooled"] += 1
                spooled = True
            if spooled:
                self._enforce_bound()

    def retry_spooled(self) -> int:
        """Upload up to ``max_files_per_retry`` spooled files, oldest first,
        unless S3 is in its backoff; returns how many went up."""
        with self._lock:
            return self._drain(self._max_files) if self._s3_up() else 0

    def close(self) -> None:
        with self._lock:
            try:
                self._drain(None)
                left = len(self.spool.pending())
                if left:
                    logger.warning("turn log: %d files stay in the spool %s for the next start", left, self.spool.root)
            finally:
                self.sink.close()

    def stats(self) -> dict[str, int]:
        """Counters (objects unless named ``_rows``), plus what waits now."""
        with self._lock:
            files = self.spool.pending()
            return {**self._counts, "spool_files": len(files), "spool_bytes": self.spool.size_bytes(files)}

    def __repr__(self) -> str:
        return f"SpoolingSink({self.sink!r}, spool_dir={str(self.spool.root)!r})"

    def _s3_up(self) -> bool:
        return self._down_until is None or self._clock() >= self._down_until

    def _put(self, obj: PartitionObject) -> bool:
        try:
            self.sink.put(obj)
        except TurnLogS3Error as exc:
            self._counts["s3_errors"] += 1
            if self._down_until is None:
                logger.warning("turn log: %s; spooling to %s until S3 is back", exc, self.spool.root)
            self._down_until = self._clock() + self._backoff_s
            return False
        if self._down_until is not None:
            logger.info("turn log: S3 is back; uploading the spool")
            self._down_until = None
        return True

    def _drain(self, limit: int | None) -> int:
        uploaded = 0
        for path in self.spool.pending()[:limit]:
            obj = self._load(path)
            if obj is None:
                continue
            if not self._put(obj):
                break
            self._counts["spool_uploaded"] += 1
            self.spool.remove(path)
            uploaded += 1
        return uploaded

    def _load(self, path: Path) -> PartitionObject | None:
        """The spooled object, or None if it vanished or is not Parquet."""
        try:
            num_rows = pq.read_metadata(path).num_rows
            body = path.read_bytes()
        except FileNotFoundError:  # another replica uploaded it meanwhile
            return None
        except (OSError, pa.ArrowException) as exc:
            # Uploading it would break every reader of the prefix: set it
            # aside under a name readers and the spool skip (``_`` prefix).
            aside = path.with_name(f"_{path.name}.corrupt")
            os.replace(path, aside)
            self._counts["spool_corrupt"] += 1
            logger.error("turn log: spool file is not Parquet (%s); moved to %s", type(exc).__name__, aside)
            return None
        return PartitionObject(self.spool.key(path), body, num_rows)

    def _enforce_bound(self) -> None:
        files = self.spool.pending()
        total = self.spool.size_bytes(files)
        dropped = rows = 0
        for path in files:
            if total <= self._max_bytes:
                break
            total -= _size(path)
            rows += _num_rows(path)
            self.spool.remove(path)
            dropped += 1
        if dropped:
            self._counts["spool_dropped"] += dropped
            self._counts["spool_dropped_rows"] += rows
            logger.warning(
                "turn log: spool over %d bytes; dropped the %d oldest files (%d turn records)",
                self._max_bytes,
                dropped,
                rows,
            )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _num_rows(path: Path) -> int:
    try:
        return pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowException):
        return 0
