"""The secrets suite (issue 14): run turns of every kind with a canary
provider key and a canary client key (successes, failovers, an upstream that
quotes the key it was refused, a wrong client key, a client key smuggled in
the body), then scan every response, Ray's log folder (every replica's and
actor's stdout and stderr) and the turn log for them. Zero hits is the test.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
from helpers import CANARY_CLIENT_KEY, CANARY_PROVIDER_KEY, CANARY_PROVIDER_KEY_ENV, sim_endpoint

pytestmark = pytest.mark.ray

APP = "nemo-router-secrets"
PREFIX = "/secrets"
USER = [{"role": "user", "content": "hello"}]
# What must never show: each key whole, the provider key's tail (an upstream
# quotes it masked, as OpenAI does: first 12 characters, ****, last 7), and
# the unique middle of each.
NEEDLES = (CANARY_PROVIDER_KEY, CANARY_CLIENT_KEY, CANARY_PROVIDER_KEY[-7:], CANARY_CLIENT_KEY[-7:],
           CANARY_PROVIDER_KEY[14:30], CANARY_CLIENT_KEY[14:30])


@pytest.fixture(scope="module")
def secrets_app(router, simulator, tmp_path_factory):
    from ray import serve

    from deployments.app import build_app
    from router.config import parse_config
    from router.keys import hash_key

    simulator.set_behavior("sec-ok", ttft_ms=5, token_interval_ms=1, tokens=4)
    simulator.set_behavior("sec-401", failure="http_401")
    turn_log = tmp_path_factory.mktemp("secrets-turnlog")

    def ep(name, profile, provider="openai"):
        return sim_endpoint(simulator, name, profile, provider, api_key_env=CANARY_PROVIDER_KEY_ENV)

    steady = {"strategy": "ordered", "max_attempts": 4, "breaker": {"consecutive_failures": 10_000, "min_requests": 10_000}}
    config = parse_config({
        "model_groups": {
            "sec-ok": {**steady, "endpoints": [ep("sec-ok", "sec-ok")]},
            "sec-failover": {**steady, "endpoints": [ep("sec-oa-401", "sec-401"), ep("sec-an-401", "sec-401", "anthropic"),
                                                     ep("sec-ge-401", "sec-401", "gemini"), ep("sec-ok2", "sec-ok")]},
            "sec-refused": {**steady, "endpoints": [ep("sec-only-401", "sec-401")]},
        },
        "auth": {"keys": [{"name": "canary-client", "hash": hash_key(CANARY_CLIENT_KEY)}]},
        "turn_log": {"sink": "local", "path": str(turn_log), "flush_interval_s": 0.3},
        "deployments": {"tracker_name": "nemo-tracker-secrets"},
        "cache": {"enabled": False},
        "metrics": {"enabled": False},
    })
    serve.run(build_app(config), name=APP, route_prefix=PREFIX)
    yield f"{router}{PREFIX}", turn_log
    serve.delete(APP)


def _texts_of(response: httpx.Response) -> str:
    return response.text + json.dumps(dict(response.headers))


def test_no_key_appears_in_any_response_log_or_record(secrets_app, simulator, ray_session):
    from helpers import wait_for_records

    url, turn_log = secrets_app
    auth = {"authorization": f"Bearer {CANARY_CLIENT_KEY}"}
    seen: list[str] = []
    request_ids = set()
    with httpx.Client(base_url=url, timeout=20) as client:
        for model, stream in [("sec-ok", False), ("sec-ok", True), ("sec-failover", False), ("sec-failover", True),
                              ("sec-refused", False), ("sec-refused", True)]:
            request_id = f"secrets-{uuid.uuid4().hex[:8]}"
            request_ids.add(request_id)
            response = client.post("/v1/chat/completions", headers={**auth, "x-request-id": request_id},
                                   json={"model": model, "stream": stream, "messages": USER, "api_key": CANARY_CLIENT_KEY})
            seen.append(_texts_of(response))
        # The upstream really was sent the canary and quoted it back masked:
        # otherwise this test would prove nothing.
        wrong = client.post("/v1/chat/completions", headers={"authorization": f"Bearer {CANARY_CLIENT_KEY[:-1]}X"},
                            json={"model": "sec-ok", "messages": USER})
        assert wrong.status_code == 401
        seen.append(_texts_of(wrong))
        for path in ("/v1/models", "/v1/routing", "/health"):
            seen.append(_texts_of(client.get(path, headers=auth)))
    quoted = httpx.post(simulator.base_url("sec-401") + "/chat/completions", json={"model": "m", "messages": USER},
                        headers={"authorization": f"Bearer {CANARY_PROVIDER_KEY}"}, timeout=10)
    assert CANARY_PROVIDER_KEY[-7:] in quoted.text  # the simulated upstream does quote the key
    records = wait_for_records(turn_log, request_ids)
    assert set(records) == request_ids
    assert any(r["error_detail"] for r in records.values())
    seen.append(json.dumps(list(records.values()), default=str))

    logs = Path(ray_session._private.worker._global_node.get_logs_dir_path())
    hits = [f"response: {needle}" for text in seen for needle in NEEDLES if needle in text]
    for path in logs.rglob("*"):
        if path.is_file():
            data = path.read_bytes().decode("utf-8", "replace")
            hits += [f"{path}: {needle}" for needle in NEEDLES if needle in data]
    assert hits == []
