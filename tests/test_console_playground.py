"""The playground's page as the router serves it (``deployments.console.routes``),
on a bare FastAPI app: no Ray. The page loads only its own files, relative
to itself (so it works under a route prefix), with the console's strict CSP
and nothing inline for that policy to refuse."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from deployments.console.routes import add_console_routes
from deployments.http_app import openai_api


@pytest.fixture(scope="module")
def client():
    api = openai_api()
    add_console_routes(api)
    return TestClient(api)


def test_the_page_and_its_files_are_served_with_the_strict_policy(client):
    page = client.get("/playground")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    files = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert files and all(f.startswith("console/") for f in files)  # relative: any route prefix
    for name in files:
        served = client.get(f"/{name}")
        assert served.status_code == 200 and served.headers["content-security-policy"] == page.headers["content-security-policy"]


def test_nothing_inline_for_the_policy_to_refuse(client):
    html = client.get("/playground").text
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)  # every script is a file
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)  # no inline handlers


@pytest.mark.parametrize("name", ["nope.js", "..%2Fassets.py", "assets.py", ".keep"])
def test_anything_else_is_a_404_in_openais_shape(client, name):
    response = client.get(f"/console/{name}")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
