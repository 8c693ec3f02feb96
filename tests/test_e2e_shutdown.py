"""A graceful shutdown flushes every buffered turn record: with a flush
interval of an hour, the records reach the Parquet log only because the
caller replica closes its writer when Serve stops it."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

pytestmark = pytest.mark.ray


def test_deleting_the_app_flushes_buffered_turn_records(router, simulator, tmp_path):
    from ray import serve
    from nemo_turnlog import read_turn_log

    from deployments.app import build_app
    from router.config import parse_config

    config = parse_config(
        {
            "model_groups": {"flush": {"endpoints": [{"name": "flush-sim", "base_url": simulator.base_url("backup"), "model": "sim-model"}]}},
            "turn_log": {"sink": "local", "path": str(tmp_path), "flush_interval_s": 3600, "flush_max_records": 10_000},
            "deployments": {"tracker_name": "nemo-tracker-flush"},
            "cache": {"enabled": False},
        }
    )
    serve.run(build_app(config), name="nemo-router-flush", route_prefix="/flush")
    run = uuid.uuid4().hex[:8]
    for i in range(5):
        response = httpx.post(
            f"{router}/flush/v1/chat/completions",
            json={"model": "flush", "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-request-id": f"flush-{run}-{i}"},
            timeout=20,
        )
        assert response.status_code == 200
    time.sleep(0.5)
    assert read_turn_log(tmp_path).num_rows == 0  # still buffered

    serve.delete("nemo-router-flush")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and read_turn_log(tmp_path).num_rows < 5:
        time.sleep(0.3)
    ids = sorted(r["request_id"] for r in read_turn_log(tmp_path).to_pylist())
    assert ids == [f"flush-{run}-{i}" for i in range(5)]
