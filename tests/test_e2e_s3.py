"""The turn log goes to S3 (a real S3-compatible server on loopback) from
inside Ray Serve, and an S3 outage in the middle of a run loses nothing."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

pytestmark = pytest.mark.ray

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def s3_router(router, simulator, tmp_path_factory):
    from ray import serve
    from nemo_turnlog.testing import LocalS3Server

    from deployments.app import build_app
    from router.config import parse_config

    spool = tmp_path_factory.mktemp("spool")
    s3 = LocalS3Server()
    s3.start()
    bucket = s3.new_bucket()
    config = parse_config(
        {
            "model_groups": {"s3-voice": {"endpoints": [{"name": "s3-sim", "base_url": simulator.base_url("backup"), "model": "sim-model"}]}},
            "turn_log": {
                "sink": "s3",
                "s3": {"bucket": bucket, "prefix": "turns", "region": "us-east-1", "endpoint_url": s3.endpoint_url},
                "spool": {"path": str(spool), "retry_backoff_s": 0.5},
                "flush_interval_s": 0.3,
            },
            "deployments": {"tracker_name": "nemo-tracker-s3"},
            "cache": {"enabled": False},
        }
    )
    serve.run(build_app(config), name="nemo-router-s3", route_prefix="/s3")
    yield s3, bucket, f"{router}/s3", spool
    serve.delete("nemo-router-s3")
    s3.stop()


def rows_in_s3(s3, bucket: str) -> list[dict]:
    from nemo_turnlog import read_turn_log

    return read_turn_log(f"s3://{bucket}/turns", endpoint_url=s3.endpoint_url, region="us-east-1").to_pylist()


def test_every_turn_reaches_s3_even_across_an_outage(s3_router):
    s3, bucket, url, spool = s3_router
    run = uuid.uuid4().hex[:8]
    ids = []
    with httpx.Client(base_url=url, timeout=20) as client:
        def turn(i: int) -> None:
            request_id = f"s3-{run}-{i}"
            response = client.post("/v1/chat/completions", json={"model": "s3-voice", "messages": USER, "stream": True}, headers={"x-request-id": request_id})
            assert response.status_code == 200
            ids.append(request_id)

        for i in range(10):
            turn(i)
        s3.stop()  # the outage: turns must go on, records wait in the spool
        outage_started = time.monotonic()
        for i in range(10, 20):
            turn(i)
        assert time.monotonic() - outage_started < 10  # a dead sink never slows a turn
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not list(spool.rglob("*.parquet")):
            time.sleep(0.2)
        assert list(spool.rglob("*.parquet"))  # the outage's records were spooled
        s3.start()

    deadline = time.monotonic() + 30
    found: list[str] = []
    while time.monotonic() < deadline:
        try:
            found = [r["request_id"] for r in rows_in_s3(s3, bucket) if r["request_id"].startswith(f"s3-{run}-")]
        except Exception:  # the server is coming back
            found = []
        if len(found) >= len(ids):
            break
        time.sleep(0.5)
    assert sorted(found) == sorted(ids)  # every turn served is in S3, once
