"""The dashboard's routes without Ray: the state query read and checked
(a bad one is a 400 naming the parameter), and the page's files: served
with the console's CSP, with nothing inline for the CSP to refuse."""

from __future__ import annotations

import re

import pytest

from deployments.console import console_file
from deployments.console.dashboard import state_query, turn_seq
from nemo_turnlog.dashboard import Since
from nemo_turnlog.recent_turns import TurnFilter
from router.errors import InvalidRequest
from starlette.exceptions import HTTPException


def test_state_query_defaults_and_filters():
    query = state_query({})
    assert query.since == Since() and query.turns_since == 0 and query.limit == 200 and query.turn_filter == TurnFilter()
    query = state_query({"since": "ab12.40", "turns_since": "17", "model": "voice", "status": "error", "conversation": "call-", "limit": "50"})
    assert query.since == Since("ab12", 40) and query.turns_since == 17 and query.limit == 50
    assert query.turn_filter == TurnFilter(model_group="voice", status="error", conversation="call-")


@pytest.mark.parametrize(
    "params, param",
    [
        ({"since": "x.y"}, "since"),
        ({"since": "../etc"}, "since"),
        ({"turns_since": "-1"}, "turns_since"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"status": "weird"}, "status"),
        ({"endpoint": "e" * 201}, "endpoint"),
    ],
)
def test_a_bad_state_query_is_a_400_naming_the_parameter(params, param):
    with pytest.raises(InvalidRequest) as caught:
        state_query(params)
    assert caught.value.to_openai()["error"]["param"] == param


def test_turn_seq_is_required():
    assert turn_seq({"seq": "3"}) == 3
    with pytest.raises(InvalidRequest):
        turn_seq({})


def test_the_page_and_its_files_obey_the_csp():
    page = console_file("dashboard.html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    html = page.body.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)  # no inline script
    assert "<style" not in html and not re.search(r"\sstyle=", html) and not re.search(r"\son[a-z]+=", html)
    assert re.findall(r'(?:src|href)="([^"]+)"', html) == ["console/dashboard.css", "console/dashboard.js"]
    script = console_file("dashboard.js").body.decode()
    assert "http://" not in script.replace("http://www.w3.org/2000/svg", "") and "https://" not in script
    assert "innerHTML" not in script  # built with DOM calls and textContent: no markup from data
    with pytest.raises(HTTPException):
        console_file("../assets.py")


def test_open_dashboards_ask_the_tracker_at_most_twice_a_second():
    import asyncio

    from deployments.console.dashboard import ROUTING_MAX_AGE_S, ConsoleData

    class Hub:
        class console_state:
            @staticmethod
            async def remote(*args):
                return {"routing": args[-1]}

    class Metrics:
        asked = 0

        def hub(self):
            return Hub()

        async def routing_snapshot(self):
            self.asked += 1
            return {"e": {"n": self.asked}}

    now = [100.0]
    metrics = Metrics()
    data = ConsoleData(metrics, clock=lambda: now[0])

    async def polls():
        for _ in range(5):
            await data.view("state", {})
        now[0] += ROUTING_MAX_AGE_S
        return await data.view("state", {})

    last = asyncio.run(polls())
    assert metrics.asked == 2 and b'"n":2' in last.body
