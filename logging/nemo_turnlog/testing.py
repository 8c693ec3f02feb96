"""A real S3-compatible server on loopback, for tests and benchmarks.

``LocalS3Server`` runs moto's server mode (``moto[server]``, a test
dependency, imported only here) in a thread of this process. Stopping and
starting it again on the same port simulates an S3 outage: moto keeps its
buckets in process memory, so they survive the restart.

Clients need credentials of some kind; apply ``FAKE_AWS_ENV`` (and remove
``AWS_ENV_TO_CLEAR``) in the test's environment so nothing real is used::

    with pytest.MonkeyPatch.context() as env:
        for name in AWS_ENV_TO_CLEAR:
            env.delenv(name, raising=False)
        for name, value in FAKE_AWS_ENV.items():
            env.setenv(name, value)
        with LocalS3Server() as server:
            ...
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

from nemo_turnlog.s3_client import make_s3_client

__all__ = ["AWS_ENV_TO_CLEAR", "FAKE_AWS_ENV", "LocalS3Server"]

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "fake-test-key-id",
    "AWS_SECRET_ACCESS_KEY": "fake-test-secret-never-logged",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
AWS_ENV_TO_CLEAR = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION")


class LocalS3Server:
    """moto's S3 on ``127.0.0.1:port`` (a free port unless given)."""

    def __init__(self, port: int | None = None):
        self.port = port or _free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._server: Any = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self, **options: Any) -> Any:
        """A boto3 client for this server; ``options`` go to ``make_s3_client``."""
        return make_s3_client(region="us-east-1", endpoint_url=self.endpoint_url, **options)

    def new_bucket(self) -> str:
        name = f"turnlog-{uuid.uuid4().hex[:12]}"
        client = self.client()
        client.create_bucket(Bucket=name)
        client.close()
        return name

    def __enter__(self) -> "LocalS3Server":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
