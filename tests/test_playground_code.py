"""The playground's "Copy as code" (``deployments/console/static/playground_code.js``),
run in headless Chromium with no router: for any request, the ``curl``
command, read by bash, passes exactly the page's body and headers with the
key from ``$NEMO_API_KEY``; the ``openai`` snippet parses as Python and its
arguments rebuild exactly the body and headers. (Running both against a
router is ``tests/test_e2e_playground.py``.)"""

from __future__ import annotations

import ast
import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SCRIPT = Path(__file__).resolve().parent.parent / "deployments" / "console" / "static" / "playground_code.js"
URL = "http://127.0.0.1:8000/v1"
# bash prints each argument curl would get, NUL-terminated, instead of running curl.
CURL_STUB = "curl() { printf '%s\\0' \"$@\"; }\n"

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=24)  # quotes, $, backslashes, newlines, emoji
header_value = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=24)
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]), "content": text}), min_size=1, max_size=4)


@st.composite
def requests(draw):
    body = {"model": draw(text.filter(bool)), "messages": draw(messages), "stream": draw(st.booleans())}
    if body["stream"]:
        body["stream_options"] = {"include_usage": True}
    if draw(st.booleans()):
        body["nemo_tags"] = draw(st.lists(text, max_size=3))
    if draw(st.booleans()):
        body["nemo_cache"] = False
    headers = {"content-type": "application/json"}
    if draw(st.booleans()):
        headers["x-nemo-conversation-id"] = draw(header_value)
    return headers, body


@pytest.fixture(scope="module")
def code_page(chromium_browser):
    context = chromium_browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.set_content("<!doctype html><title>code</title>")
    page.add_script_tag(path=str(SCRIPT))
    yield page
    context.close()


def curl_arguments(page, headers: dict, body: dict) -> list[str]:
    command = page.evaluate("([u, h, b]) => nemoCode.curlCommand(u + '/chat/completions', h, b)", [URL, headers, body])
    done = subprocess.run(["bash", "-c", CURL_STUB + command], env={**os.environ, "NEMO_API_KEY": "sk-from-env"},
                          capture_output=True, check=True, timeout=10)
    return done.stdout.decode().split("\0")[:-1]


def snippet_call(page, headers: dict, body: dict) -> dict:
    """The ``chat.completions.create`` keywords of the snippet, as values."""
    snippet = page.evaluate("([u, h, b]) => nemoCode.pythonSnippet(u, h, b)", [URL, headers, body])
    tree = ast.parse(snippet)
    (call,) = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", None) == "create"]
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=requests())
def test_the_curl_command_sends_exactly_the_body_and_headers(code_page, request):
    headers, body = request
    args = curl_arguments(code_page, headers, body)
    assert json.loads(args[args.index("-d") + 1]) == body
    sent = [args[i + 1] for i, a in enumerate(args) if a == "-H"]
    expected = ["Authorization: Bearer sk-from-env", *(f"{k}: {v}" for k, v in headers.items())]
    assert sorted(sent) == sorted(expected)
    assert args[-2] == "-d" and (("-N" in args) == body["stream"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=requests())
def test_the_python_snippet_rebuilds_exactly_the_body_and_headers(code_page, request):
    headers, body = request
    keywords = snippet_call(code_page, headers, body)
    extra_headers = keywords.pop("extra_headers", {})
    extra_body = keywords.pop("extra_body", {})
    assert not set(keywords) & set(extra_body) and {**keywords, **extra_body} == body
    assert extra_headers == {k: v for k, v in headers.items() if k != "content-type"}


def test_the_snippet_reads_the_key_from_the_environment_and_never_holds_one(code_page):
    headers = {"content-type": "application/json", "authorization": "Bearer sk-secret"}
    body = {"model": "m", "messages": [{"role": "user", "content": "it's $HOME"}], "stream": True}
    snippet = code_page.evaluate("([u, h, b]) => nemoCode.pythonSnippet(u, h, b)", [URL, headers, body])
    command = code_page.evaluate("([u, h, b]) => nemoCode.curlCommand(u, h, b)", [URL, headers, body])
    assert 'api_key=os.environ["NEMO_API_KEY"]' in snippet and "$NEMO_API_KEY" in command
    assert "sk-secret" not in snippet + command
