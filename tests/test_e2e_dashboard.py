"""The dashboard in headless Chromium against a router app with simulated
traffic: it logs in with the admin key (kept in session storage, sent as a
bearer token), shows every group and endpoint, follows a simulated endpoint
made slow (its TTFT p99 rises and latency-based routing stops preferring it)
within seconds, filters the recent turns, and shows a turn's attempts on a
click. Its JSON route refuses a missing or non-admin key with OpenAI's
error object.

The test runs its own app on the shared Serve instance (route prefix
``/dash``, its own tracker and metrics hub with 1 s slots) and its own
simulator profiles, so changing their speed disturbs no other test."""

from __future__ import annotations

import re
import threading
import time

import httpx
import pytest

pytestmark = pytest.mark.ray

APP = "nemo-router-dashboard"
PREFIX = "/dash"
ADMIN_KEY = "sk-test-dashboard-admin"
CLIENT_KEY = "sk-test-dashboard-client"
FAST, SLOWER = "dash-fast", "dash-slower"  # simulator profiles
USER = [{"role": "user", "content": "hi"}]


def dashboard_config(simulator, turn_log_path):
    from router.config import parse_config
    from router.keys import hash_key

    def endpoint(name, profile, **extra):
        return {"name": name, "provider": "openai", "base_url": simulator.base_url(profile), "model": "sim-model"} | extra

    no_breaker = {"consecutive_failures": 10_000, "min_requests": 10_000}
    return parse_config(
        {
            "model_groups": {
                "dash-voice": {
                    "strategy": "latency-based",
                    "latency": {"explore_share": 0.05},
                    # Turns tagged "pinned" can only go to dash-a: it keeps getting
                    # turns (and its p99 keeps moving) after routing turns away from it.
                    "endpoints": [endpoint("dash-a", FAST, tags=["pinned"]), endpoint("dash-b", SLOWER)],
                },
                "dash-backup": {
                    "strategy": "ordered",
                    "breaker": no_breaker,
                    "endpoints": [endpoint("dash-broken", "always-500"), endpoint("dash-rescue", "backup")],
                },
            },
            "turn_log": {"sink": "none"},
            "deployments": {"tracker_name": "nemo-tracker-dash", "report_interval_s": 0.05},
            "cache": {"enabled": False},
            "metrics": {"hub_name": "nemo-metrics-hub-dash", "window_s": 60, "slot_s": 1, "report_interval_s": 0.2},
            "auth": {"keys": [{"name": "dash", "hash": hash_key(CLIENT_KEY)}], "admin_key_hash": hash_key(ADMIN_KEY)},
        },
        source="<dashboard test>",
    )


@pytest.fixture(scope="module")
def dashboard_app(router, simulator, turn_log_path):
    from ray import serve

    from deployments.app import build_app

    simulator.set_behavior(FAST, ttft_ms=30, token_interval_ms=2, tokens=5)
    simulator.set_behavior(SLOWER, ttft_ms=120, token_interval_ms=2, tokens=5)
    serve.run(build_app(dashboard_config(simulator, turn_log_path)), name=APP, route_prefix=PREFIX)
    try:
        yield f"{router}{PREFIX}"
    finally:
        serve.delete(APP, _blocking=False)


class Traffic:
    """Turns in the background: the voice group back to back (routed, and
    pinned to dash-a by a tag), and now and then a turn on the backup group
    (a 500, then a fallback) in a named call."""

    def __init__(self, base_url: str):
        self._base_url = base_url
        self._stop = threading.Event()
        self.turns = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        headers = {"authorization": f"Bearer {CLIENT_KEY}"}
        with httpx.Client(base_url=self._base_url, headers=headers, timeout=10) as client:
            while not self._stop.is_set():
                voice = {"model": "dash-voice", "messages": USER, "stream": True}
                client.post("/v1/chat/completions", json=voice)
                client.post("/v1/chat/completions", json=voice, headers={"x-nemo-tags": "pinned"})
                if self.turns % 5 == 0:
                    call = {"x-nemo-conversation-id": f"call-{self.turns // 5 % 3}"}
                    client.post("/v1/chat/completions", json={"model": "dash-backup", "messages": USER}, headers=call)
                self.turns += 1
                time.sleep(0.02)


def ttft_p99_s(page, endpoint: str) -> float | None:
    text = page.locator(f'tr[data-endpoint="{endpoint}"] td.ttft_p99').get_attribute("data-seconds")
    return float(text) if text else None


def test_the_json_route_needs_the_admin_key(dashboard_app):
    missing = httpx.get(f"{dashboard_app}/v1/console/state")
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "invalid_request_error"
    client = httpx.get(f"{dashboard_app}/v1/console/state", headers={"authorization": f"Bearer {CLIENT_KEY}"})
    assert client.status_code == 403 and client.json()["error"]["code"] == "admin_key_required"
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    bad = httpx.get(f"{dashboard_app}/v1/console/state", params={"since": "../x"}, headers=admin)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "since"
    assert httpx.get(f"{dashboard_app}/v1/console/turn", params={"seq": "999999"}, headers=admin).status_code == 404
    unknown = httpx.get(f"{dashboard_app}/v1/console/nope", headers=admin)
    assert unknown.status_code == 404 and "error" in unknown.json()
    page = httpx.get(f"{dashboard_app}/dashboard")  # the page itself holds no data
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(f"{dashboard_app}/console/dashboard.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{dashboard_app}/console/..%2Fassets.py").status_code == 404


def test_dashboard_follows_a_slowed_endpoint_filters_turns_and_shows_attempts(dashboard_app, simulator, chromium_page):
    from playwright.sync_api import expect

    from browser import save_screenshot

    page = chromium_page
    requested = []
    page.on("request", lambda request: requested.append((request.url, request.headers.get("authorization"))))
    with Traffic(dashboard_app):
        page.goto(f"{dashboard_app}/dashboard")
        expect(page.locator("#login")).to_be_visible()
        page.fill("#login input[name=key]", ADMIN_KEY)
        page.click("#login button[type=submit]")
        expect(page.locator("#board")).to_be_visible()

        for group, endpoints in {"dash-voice": ["dash-a", "dash-b"], "dash-backup": ["dash-broken", "dash-rescue"]}.items():
            card = page.locator(f'[data-group="{group}"]')
            for endpoint in endpoints:
                expect(card.locator(f'tr[data-endpoint="{endpoint}"]')).to_be_visible()
        voice = page.locator('[data-group="dash-voice"]')
        expect(voice).to_have_attribute("data-preferred", "dash-a")
        page.wait_for_function("() => document.querySelectorAll('#turns tbody tr').length >= 10")
        # A few seconds of history first, so the charts show the change (and the screenshot too).
        page.wait_for_function("() => Number(document.querySelector('[data-group=\"dash-voice\"]').dataset.points) >= 6")
        before = ttft_p99_s(page, "dash-a")
        assert before is not None and before < 0.1, before

        simulator.set_behavior(FAST, ttft_ms=400)
        try:
            slowed_at = time.monotonic()
            expect(voice).to_have_attribute("data-preferred", "dash-b", timeout=10_000)
            page.wait_for_function(
                "() => Number(document.querySelector('tr[data-endpoint=\"dash-a\"] td.ttft_p99').dataset.seconds) > 0.3",
                timeout=10_000,
            )
            followed_s = time.monotonic() - slowed_at
            expect(voice.locator('tr[data-endpoint="dash-b"]')).to_have_class(re.compile(r"\bpreferred\b"))
        finally:
            simulator.set_behavior(FAST, ttft_ms=30)
        assert followed_s < 10, followed_s

        # The recent-turns filter, then a click on a turn that fell back.
        page.select_option("#filters select[name=model]", "dash-backup")
        rows = page.locator("#turns tbody tr")
        expect(rows.first).to_be_visible()
        page.wait_for_function(
            "() => [...document.querySelectorAll('#turns tbody tr td.model')].every(td => td.textContent === 'dash-backup')"
        )
        assert set(rows.locator("td.model").all_text_contents()) == {"dash-backup"}
        page.select_option("#filters select[name=endpoint]", "dash-rescue")
        page.select_option("#filters select[name=status]", "ok")
        page.wait_for_function(
            "() => { const e = [...document.querySelectorAll('#turns tbody tr td.endpoint')].map(td => td.textContent);"
            " return e.length > 0 && e.every(t => t === 'dash-rescue'); }"
        )
        page.fill("#filters input[name=conversation]", "call-1")
        page.wait_for_function(
            "() => { const c = [...document.querySelectorAll('#turns tbody tr td.conversation')].map(td => td.textContent);"
            " return c.length > 0 && c.every(t => t === 'call-1'); }"
        )
        fell_back = rows.filter(has=page.locator("td.fallbacks", has_text="1")).first
        expect(fell_back).to_be_visible()
        fell_back.click()
        attempts = page.locator("#attempts tbody tr")
        expect(attempts).to_have_count(2)
        assert attempts.locator("td.endpoint").all_text_contents() == ["dash-broken", "dash-rescue"]
        assert attempts.locator("td.outcome").all_text_contents()[1] == "ok"
        broken = page.locator('[data-group="dash-backup"] tr[data-endpoint="dash-broken"] td.failed_attempts')
        assert int(broken.text_content()) > 0  # it served nothing, and its failures show
        save_screenshot(page, "dashboard")

    # The key went only in the Authorization header, never in a URL.
    assert not [url for url, _ in requested if ADMIN_KEY in url]
    assert {auth for url, auth in requested if "/v1/console/" in url} == {f"Bearer {ADMIN_KEY}"}
