"""The turn log's one door to S3: client construction, URLs and errors.

Everything that talks to S3 (``S3ParquetSink``, ``read_turn_log`` on an
``s3://`` URL) builds its client here and translates botocore's exceptions
here, once, into ``TurnLogS3Error``::

    TurnLogS3Error            S3 refused or could not be reached
        .status               HTTP status, or None when no response came
        .code                 S3's error code (``SlowDown``, ``NoSuchBucket``), or the
                              botocore exception's class name when no response came
        .transient            True for no response, 5xx, throttling and timeouts

Credentials come from boto3's normal chain (environment, shared files,
instance or pod role); nothing here reads or logs them.

``S3_CALLS`` lists every S3 operation the turn log makes (the sink, the
reader, the spend ledger), the IAM action it needs and the keys below the
turn log's prefix it touches. The cluster's IAM policies
(``deploy/iam/*.json``) grant exactly these, and
``tests/test_cluster_iam.py`` checks both against the calls in the code: a
new S3 call must be added here and to the policies.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

__all__ = ["S3_CALLS", "TurnLogS3Error", "make_s3_client", "s3_errors", "split_s3_url"]

# S3 operation -> (IAM action, where below ``<prefix>/``). For object
# operations the places are key patterns; for listing, the ``Prefix``
# values sent (the IAM condition key ``s3:prefix``).
S3_CALLS: dict[str, tuple[str, tuple[str, ...]]] = {
    # S3ParquetSink.put (turn records), LedgerStore.append (top-ups)
    "PutObject": ("s3:PutObject", ("dt=*", "_ledger/*")),
    # read_turn_log (keystore spend recovery, `nemo-router report`), LedgerStore.read
    "GetObject": ("s3:GetObject", ("dt=*", "_ledger/*")),
    # read_turn_log lists the whole prefix, LedgerStore.read its _ledger/ folder
    "ListObjectsV2": ("s3:ListBucket", ("", "_ledger/")),
}

# Short timeouts: the client runs on the writer's thread, and an S3 that does
# not answer should send batches to the spool within seconds, not minutes.
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 15.0
MAX_ATTEMPTS = 3

_THROTTLING_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed"}
)


class TurnLogS3Error(Exception):
    """An S3 call failed; see the module docstring for the attributes."""

    def __init__(self, operation: str, status: int | None, code: str):
        self.operation = operation
        self.status = status
        self.code = code
        self.transient = status is None or status >= 500 or code in _THROTTLING_CODES
        shown = f"HTTP {status} {code}" if status is not None else f"no response ({code})"
        super().__init__(f"S3 {operation} failed: {shown}")


def make_s3_client(
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    read_timeout_s: float = READ_TIMEOUT_S,
    max_attempts: int = MAX_ATTEMPTS,
) -> Any:
    """A boto3 S3 client with short timeouts and botocore's standard retries.

    ``endpoint_url`` points at an S3-compatible store (MinIO, moto,
    Ceph); path-style addressing is used then, since such stores rarely
    serve virtual-host bucket names.
    """
    addressing = {"addressing_style": "path"} if endpoint_url else {}
    config = Config(
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        s3=addressing,
    )
    # A session of our own: boto3's default session is shared, mutable state.
    return boto3.session.Session().client("s3", region_name=region, endpoint_url=endpoint_url, config=config)


@contextmanager
def s3_errors(operation: str) -> Iterator[None]:
    """``with s3_errors("PutObject"):`` turns botocore errors into ``TurnLogS3Error``."""
    try:
        yield
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = exc.response.get("Error", {}).get("Code") or "Unknown"
        raise TurnLogS3Error(operation, status, code) from exc
    except BotoCoreError as exc:
        raise TurnLogS3Error(operation, None, type(exc).__name__) from exc


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix/`` -> ``("bucket", "some/prefix")``."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {url!r}")
    return bucket, prefix.strip("/")
