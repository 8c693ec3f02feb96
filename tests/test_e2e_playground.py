"""The playground (``GET /playground``) in headless Chromium against a router
app of its own on the shared Serve instance (route prefix ``/playground-app``,
its own tracker, one ingress replica calling upstreams itself): a client key
entered in the page, a catalog model picked, a conversation streamed token by
token with the endpoint, TTFT, tokens and cost shown, the history resent,
streaming turned off, and "Copy as code" run for real: the copied ``curl``
command (bash) and ``openai`` snippet (python) each get a 200 from the router
for the very body and headers the page sent, the key coming from
``$NEMO_API_KEY``. A wrong key shows the router's 401 in the page."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from browser import save_screenshot

pytestmark = pytest.mark.ray

APP = "nemo-router-playground"
PREFIX = "/playground-app"
KEY = "sk-test-playground-client"
TOKENS = 24  # words per simulated reply, one every 60 ms: a stream to watch grow
FULL_REPLY = " ".join(f"w{i}" for i in range(1, TOKENS + 1))


@pytest.fixture(scope="module")
def playground(router, simulator, tmp_path_factory):
    from ray import serve

    from deployments.app import build_app
    from router.config import parse_config
    from router.keys import hash_key

    simulator.set_behavior("playground", ttft_ms=60, token_interval_ms=60, tokens=TOKENS)
    sim = {"provider": "openai", "base_url": simulator.base_url("playground"), "model": "sim-model"}
    config = parse_config(
        {
            "model_groups": {
                # A catalog model served by the simulator: listed with its catalog card, priced.
                "gpt-4o-mini": {"endpoints": [{"name": "catalog:gpt-4o-mini", "tags": ["eu"], **sim}]},
                "voice-demo": {"endpoints": [{"name": "pg-sim", **sim}]},
            },
            "turn_log": {"sink": "local", "path": str(tmp_path_factory.mktemp("playground-turnlog"))},
            "deployments": {"tracker_name": "nemo-tracker-playground", "upstream_calls": "ingress"},
            "cache": {"enabled": False},
            "metrics": {"enabled": False},
            "auth": {"keys": [{"name": "playground", "hash": hash_key(KEY)}]},
        }
    )
    serve.run(build_app(config), name=APP, route_prefix=PREFIX)
    yield f"{router}{PREFIX}"
    serve.delete(APP)


class Recorder:
    """A pass-through HTTP proxy in front of the router that keeps what each
    request sent (path, headers, body) and the router's status."""

    def __init__(self, router_origin: str):
        self.seen: list[dict] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                forwarded = {k: v for k, v in headers.items() if k in ("authorization", "content-type") or k.startswith("x-nemo-")}
                reply = httpx.post(router_origin + self.path, content=body, headers=forwarded, timeout=20)
                recorder.seen.append({"path": self.path, "headers": headers, "body": json.loads(body), "status": reply.status_code})
                self.send_response(reply.status_code)
                self.send_header("content-type", reply.headers["content-type"])
                self.send_header("content-length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder(router):
    proxy = Recorder(router)
    yield proxy
    proxy.close()


def log_in(page, url: str, key: str) -> None:
    page.goto(f"{url}/playground")
    page.fill("#key", key)
    page.click("#use-key")


def send_turn(page, text: str):
    """Send ``text``; the request the page sent."""
    page.fill("#turn", text)
    with page.expect_request(lambda r: r.url.endswith("/v1/chat/completions") and r.method == "POST") as sent:
        page.click("#send")
    return sent.value


def wait_done(page) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#stat-status")).to_have_text("done")


def run_copied_code(page, router: str, recorder: Recorder) -> list[dict]:
    """Run the page's curl command and Python snippet, pointed at the
    recording proxy (only the origin is changed); what each sent."""
    curl, python = page.text_content("#code-curl"), page.text_content("#code-python")
    assert KEY not in curl and KEY not in python  # the key is never written out
    env = {**os.environ, "NEMO_API_KEY": KEY}
    recorder.seen.clear()
    for argv in (["bash", "-c", curl.replace(router, recorder.origin)], [sys.executable, "-c", python.replace(router, recorder.origin)]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert "w1" in done.stdout and f"w{TOKENS}" in done.stdout  # the reply, as SSE (curl) or text (python)
    return recorder.seen


def usd_cost(prompt: int, completion: int) -> float:
    from router.catalog import load_catalog

    price = load_catalog().get("gpt-4o-mini").price
    return (prompt * price.input_per_mtok + completion * price.output_per_mtok) / 1e6


def test_a_wrong_key_shows_the_routers_401(chromium_page, playground):
    from playwright.sync_api import expect

    log_in(chromium_page, playground, "sk-not-a-key")
    expect(chromium_page.locator("#error")).to_have_text("401: Incorrect API key provided.")
    assert "sk-not-a-key" not in chromium_page.url


def test_a_conversation_streams_shows_where_and_what_it_cost_and_copies_as_code(chromium_page, playground, router, recorder):
    from playwright.sync_api import expect

    page = chromium_page
    problems: list[str] = []  # a script error or a CSP refusal would land here
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    log_in(page, playground, KEY)
    assert KEY not in page.url and page.evaluate("Object.values(sessionStorage)") == [KEY]
    expect(page.locator("#model option[value='gpt-4o-mini']")).to_contain_text("catalog: openai")
    page.select_option("#model", "gpt-4o-mini")
    page.fill("#conversation-id", "pg-call-1")
    page.fill("#tags", "eu")

    # Turn 1 streams: the reply grows before the turn completes.
    first = send_turn(page, "hello there")
    expect(page.locator("#transcript li.assistant.streaming")).to_contain_text("w1 w2")
    partial, streaming, ttft, endpoint = page.evaluate(
        "() => { const li = document.querySelector('#transcript li.assistant'), stat = n => document.getElementById(n).textContent;"
        " return [li.textContent, li.classList.contains('streaming'), stat('stat-ttft'), stat('stat-endpoint')]; }"
    )
    wait_done(page)
    assert page.text_content("#transcript li.assistant") == FULL_REPLY
    assert streaming and len(partial) < len(FULL_REPLY) and FULL_REPLY.startswith(partial)
    assert re.fullmatch(r"\d+ ms", ttft) and endpoint == "catalog:gpt-4o-mini"  # shown while it streams
    expect(page.locator("#stat-endpoint")).to_have_text("catalog:gpt-4o-mini")
    expect(page.locator("#stat-ttft")).to_have_text(re.compile(r"^\d+ ms$"))
    expect(page.locator("#stat-tokens")).to_contain_text(f"+ {TOKENS} completion")
    prompt, completion = map(int, re.findall(r"\d+", page.text_content("#stat-tokens")))
    assert page.text_content("#stat-cost") == f"${usd_cost(prompt, completion):.8f}".rstrip("0")  # priced as gpt-4o-mini
    assert json.loads(first.post_data) == {
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}],
        "stream": True, "stream_options": {"include_usage": True}, "nemo_tags": ["eu"],
    }
    assert first.headers["authorization"] == f"Bearer {KEY}" and first.headers["x-nemo-conversation-id"] == "pg-call-1"

    # Turn 2 of the same conversation resends the history.
    second = send_turn(page, "and again")
    wait_done(page)
    expect(page.locator("#stat-turn")).to_have_text("2")
    sent = json.loads(second.post_data)
    assert sent["messages"] == [
        {"role": "user", "content": "hello there"}, {"role": "assistant", "content": FULL_REPLY},
        {"role": "user", "content": "and again"},
    ]
    save_screenshot(page, "playground")
    for ran in run_copied_code(page, router, recorder):  # curl, then the openai snippet
        assert ran["status"] == 200 and ran["path"] == f"{PREFIX}/v1/chat/completions"
        assert ran["body"] == sent  # exactly what the page sent
        assert ran["headers"]["authorization"] == f"Bearer {KEY}" and ran["headers"]["x-nemo-conversation-id"] == "pg-call-1"

    # Streaming and the cache off: the whole reply at once, and the code to match.
    page.uncheck("#stream")
    page.uncheck("#cache")
    third = send_turn(page, "once more")
    wait_done(page)
    expect(page.locator("#transcript li.assistant").last).to_have_text(FULL_REPLY)
    expect(page.locator("#stat-ttft")).to_have_text("– (not streamed)")
    expect(page.locator("#stat-endpoint")).to_have_text("catalog:gpt-4o-mini")
    expect(page.locator("#stat-tokens")).to_contain_text(f"+ {TOKENS} completion")
    expect(page.locator("#stat-cost")).to_have_text(re.compile(r"^\$0\.0000\d+$"))  # x-nemo-cost-usd
    sent = json.loads(third.post_data)
    assert sent["stream"] is False and sent["nemo_cache"] is False and "stream_options" not in sent
    assert len(sent["messages"]) == 5
    for ran in run_copied_code(page, router, recorder):
        assert ran["status"] == 200 and ran["body"] == sent
    assert problems == []
