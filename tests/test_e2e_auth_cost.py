"""API keys (401/403/429 across two ingress replicas, admin routes) and the
cost of a turn in the turn log, end to end."""

from __future__ import annotations

import uuid

import httpx
import pytest
from helpers import ADMIN, LIMITED_KEY, NARROW_KEY, TEST_KEY, wait_for_records

pytestmark = pytest.mark.ray

BODY = {"model": "voice-fast", "messages": [{"role": "user", "content": "hi"}]}


def post(router: str, key: str | None, body: dict = BODY) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{router}/v1/chat/completions", json=body, headers=headers, timeout=20)


def test_missing_and_wrong_keys_are_401_and_never_echoed(router):
    missing = post(router, None)
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "invalid_request_error"
    wrong = post(router, "sk-not-a-real-key-123")
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert "sk-not-a-real-key-123" not in wrong.text


def test_a_model_the_key_may_not_use_is_403(router):
    assert post(router, NARROW_KEY).status_code == 200
    denied = post(router, NARROW_KEY, {**BODY, "model": "failover-503"})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "model_not_allowed"


def test_rate_limit_holds_across_both_ingress_replicas(router):
    # 3 turns a minute for this key; HAProxy spreads the turns over two
    # ingress replicas, so only a global count stops the fourth.
    statuses = [post(router, LIMITED_KEY) for _ in range(5)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429, 429]
    limited = statuses[3]
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(limited.headers["retry-after"]) <= 60


def test_admin_routes_need_the_admin_key(router):
    assert httpx.get(f"{router}/v1/routing", headers={"authorization": f"Bearer {TEST_KEY}"}).status_code == 403
    assert httpx.get(f"{router}/v1/routing").status_code == 401
    assert httpx.get(f"{router}/v1/routing", headers=ADMIN).status_code == 200


def test_cost_of_a_turn_comes_from_catalog_prices_and_usage(router, turn_log_path):
    from router.catalog import load_catalog

    request_id = f"cost-{uuid.uuid4().hex[:8]}"
    response = httpx.post(
        f"{router}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one two three four"}]},
        headers={"authorization": f"Bearer {TEST_KEY}", "x-request-id": request_id},
        timeout=20,
    )
    usage = response.json()["usage"]
    price = load_catalog().get("gpt-4o-mini").price
    expected = (usage["prompt_tokens"] * price.input_per_mtok + usage["completion_tokens"] * price.output_per_mtok) / 1e6
    record = wait_for_records(turn_log_path, {request_id})[request_id]
    assert record["cost_usd"] == pytest.approx(expected) and expected > 0
    assert record["cost_estimated"] is False
    assert record["api_key_id"] == "tests"  # the key's name, never the key
