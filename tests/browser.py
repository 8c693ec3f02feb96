"""Headless Chromium for the console's page tests, driven by Playwright's
Python package against the system browser (Debian's ``chromium``; nothing is
downloaded at install or test time). ``.ci/run`` installs the browser; on a
machine without one the page tests skip and say why.

    from browser import chromium_page, save_screenshot   # fixtures/helpers
    def test_x(chromium_page): chromium_page.goto(url)

The flags are the ones a closed network and a root user need: no sandbox
(root), no background networking (its connections are refused here, many at
a time), a fresh profile per browser."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

__all__ = ["CHROMIUM_ENV", "chromium_path", "chromium_browser", "chromium_page", "save_screenshot", "SCREENSHOTS"]

CHROMIUM_ENV = "NEMO_TEST_CHROMIUM"  # a browser binary other than the system's
SCREENSHOTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]  # fmt: skip


def chromium_path() -> str | None:
    configured = os.environ.get(CHROMIUM_ENV)
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


# Per module, not per session: while Playwright's sync API runs, its event
# loop is the thread's running loop, and every later test's asyncio.run()
# fails ("cannot be called from a running event loop"). Closing it with the
# module's page tests ends that loop.
@pytest.fixture(scope="module")
def chromium_browser():
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium on this machine: install Debian's `chromium` (as .ci/run does) to run the page tests")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright's Python package is missing: pip install -e '.[test]'")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def chromium_page(chromium_browser):
    context = chromium_browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)  # every wait in a page test is bounded
    try:
        yield page
    finally:
        context.close()


def save_screenshot(page, name: str) -> Path:
    """A screenshot for the README, under ``benchmarks/results/``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
