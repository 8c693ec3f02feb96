"""Shared fixtures: one simulated provider process and one Ray Serve instance
for the whole session (Ray takes 10-30 s to start here; pure tests never
touch these fixtures, so they run without Ray)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import httpx
import pytest
from browser import chromium_browser, chromium_page  # noqa: F401 (fixtures for the page tests)
from helpers import ADMIN_KEY, AUTH, CANARY_PROVIDER_KEY, CANARY_PROVIDER_KEY_ENV, LIMITED_KEY, NARROW_KEY, SCRAPE_KEY, TEST_KEY

ROUTER_PORT = int(os.environ.get("NEMO_TEST_PORT", "8765"))


# Profile name -> simulator behaviour. Each test group gets its own profiles
# so tests can change one at run time without disturbing the others.
PROFILES = {
    "fast": {"ttft_ms": 30, "token_interval_ms": 2, "tokens": 12},
    "medium": {"ttft_ms": 80, "token_interval_ms": 2, "tokens": 12},
    "slow": {"ttft_ms": 150, "token_interval_ms": 2, "tokens": 12},
    "always-503": {"failure": "http_503", "retry_after_s": 1},
    "always-500": {"failure": "http_500"},
    "backup": {"ttft_ms": 20, "token_interval_ms": 2, "tokens": 8},
    "hang": {"failure": "hang"},
    "drop": {"ttft_ms": 10, "token_interval_ms": 2, "tokens": 20, "failure": "drop_after", "drop_after_tokens": 3},
    "malformed": {"ttft_ms": 10, "failure": "malformed"},
    # Live routing (issue 3): their own profiles, changed at run time.
    "lat-a": {"ttft_ms": 40, "token_interval_ms": 2, "tokens": 5},
    "lat-b": {"ttft_ms": 120, "token_interval_ms": 2, "tokens": 5},
    "lat-c": {"ttft_ms": 250, "token_interval_ms": 2, "tokens": 5},
    "busy": {"ttft_ms": 20, "token_interval_ms": 100, "tokens": 15},
    "flaky": {"failure": "http_500"},
    # Mid-stream continuation (issue 4): cut after w3, resumed elsewhere.
    "cut": {"ttft_ms": 10, "token_interval_ms": 2, "tokens": 20, "failure": "drop_after", "drop_after_tokens": 3},
    "stall": {"ttft_ms": 10, "token_interval_ms": 2, "tokens": 20, "failure": "stall_after", "drop_after_tokens": 3},
    "continuer": {"ttft_ms": 10, "token_interval_ms": 2, "tokens": 20},
    # Cross-provider chains (issue 4): one profile per provider link.
    "xp-an": {"ttft_ms": 10, "token_interval_ms": 2, "tokens": 6},
    "xp-ge": {"ttft_ms": 10, "token_interval_ms": 2, "tokens": 6},
    "alerting": {"ttft_ms": 10, "token_interval_ms": 1, "tokens": 3},
    # Hedged first token (issue 4): a first endpoint slow to its first token.
    "hedge-slow": {"ttft_ms": 3000, "token_interval_ms": 2, "tokens": 8},
    "hedge-fast": {"ttft_ms": 20, "token_interval_ms": 2, "tokens": 8},
    "notes-an": {"ttft_ms": 10, "token_interval_ms": 2, "tokens": 4},
    # The lean deployment options (issue 7): a long stream to hang up on.
    "lean-slow": {"ttft_ms": 10, "token_interval_ms": 200, "tokens": 30},
    # Request faults (issue 4): a small-context model refuses, a large one serves.
    "ctx-small": {"failure": "context_too_long"},
    "ctx-large": {"ttft_ms": 10, "token_interval_ms": 2, "tokens": 6},
    # A clean stop (issue 14): turns that finish within the grace period, and
    # turns that cannot.
    "stop-short": {"ttft_ms": 20, "token_interval_ms": 100, "tokens": 20},
    "stop-long": {"ttft_ms": 20, "token_interval_ms": 200, "tokens": 150},
}

WEBHOOK_ENV = "NEMO_TEST_ALERT_WEBHOOK_URL"


@pytest.fixture(scope="module")
def s3():
    """moto's S3 on loopback, with fake credentials in the environment (so
    nothing can reach a real account); no Ray."""
    from nemo_turnlog.testing import AWS_ENV_TO_CLEAR, FAKE_AWS_ENV, LocalS3Server

    with pytest.MonkeyPatch.context() as env:
        for name in AWS_ENV_TO_CLEAR:
            env.delenv(name, raising=False)
        for name, value in FAKE_AWS_ENV.items():
            env.setenv(name, value)
        with LocalS3Server() as server:
            yield server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def endpoint(name: str, url: str, **extra) -> dict:
    return {"name": name, "provider": "openai", "base_url": url, "model": "sim-model"} | extra


def router_config(sim, turn_log_path: Path) -> dict:
    from router.keys import hash_key

    refused_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    # Groups whose tests expect a fixed first choice use the ordered strategy.
    ordered = {"strategy": "ordered"}
    # Failover tests test failover: keep the breaker from taking the failing
    # endpoint out of the plan (the breaker has its own group and test).
    failover = {**ordered, "breaker": {"consecutive_failures": 10_000, "min_requests": 10_000}}
    return {
        "server": {"port": ROUTER_PORT, "max_body_bytes": 65536, "body_read_timeout_s": 2.0},
        # Two ingress replicas: routing state must be global, not per replica.
        "deployments": {"ingress_replicas": 2, "report_interval_s": 0.05},
        "model_groups": {
            "voice-fast": {
                **ordered,
                "endpoints": [
                    endpoint("sim-fast", sim.base_url("fast"), tags=["function-calling"]),
                    endpoint("sim-medium", sim.base_url("medium")),
                    endpoint("sim-slow", sim.base_url("slow")),
                ]
            },
            "failover-503": {**failover, "endpoints": [endpoint("fo-503", sim.base_url("always-503")), endpoint("fo-backup", sim.base_url("backup"))]},
            "failover-refused": {**failover, "endpoints": [endpoint("refused", refused_url), endpoint("refused-backup", sim.base_url("backup"))]},
            "failover-hang": {
                **failover,
                "timeouts": {"first_token_s": 1.0, "total_s": 10},
                "endpoints": [endpoint("hang-a", sim.base_url("hang")), endpoint("hang-backup", sim.base_url("backup"))],
            },
            "all-fail": {
                **failover,
                "timeouts": {"first_token_s": 1.0, "total_s": 5},
                "endpoints": [endpoint("af-500", sim.base_url("always-500")), endpoint("af-refused", refused_url.replace("/v1", "/x/v1"))],
            },
            "failover-log": {**failover, "endpoints": [endpoint("log-500", sim.base_url("always-500")), endpoint("log-backup", sim.base_url("backup"))]},
            # A cross-group chain: hang (first-token deadline) -> 500 -> ok.
            "chain": {
                **failover,
                "timeouts": {"first_token_s": 0.8, "total_s": 10},
                "fallbacks": ["chain-second", "chain-third"],
                "endpoints": [endpoint("chain-hang", sim.base_url("hang"))],
            },
            "chain-second": {**failover, "endpoints": [endpoint("chain-500", sim.base_url("always-500"))]},
            "chain-third": {**failover, "endpoints": [endpoint("chain-ok", sim.base_url("backup"))]},
            "continue": {
                **failover,
                "endpoints": [endpoint("cont-cut", sim.base_url("cut")), endpoint("cont-next", sim.base_url("continuer"))],
            },
            "continue-stall": {
                **failover,
                "timeouts": {"first_token_s": 1.0, "stall_s": 0.5, "total_s": 10},
                "endpoints": [endpoint("stall-a", sim.base_url("stall")), endpoint("stall-next", sim.base_url("continuer"))],
            },
            "xp-openai": {
                **failover,
                "fallbacks": ["xp-anthropic", "xp-gemini"],
                "endpoints": [endpoint("xp-oa", sim.base_url("always-500"), tags=["function-calling"])],
            },
            "xp-anthropic": {**failover, "endpoints": [
                endpoint("xp-an", sim.root_url("xp-an"), provider="anthropic", model="claude-haiku-4-5", tags=["function-calling"])]},
            "xp-gemini": {**failover, "endpoints": [
                endpoint("xp-ge", sim.root_url("xp-ge"), provider="gemini", model="gemini-2.5-flash", tags=["function-calling"])]},
            "alerting": {**ordered, "endpoints": [endpoint("alert-ep", sim.base_url("alerting"))]},
            "hedged": {
                **failover,
                "timeouts": {"first_token_s": 5.0, "total_s": 10},
                "hedge": {"delay_s": 0.15, "max_share": 1.0},
                "endpoints": [endpoint("hedge-slow", sim.base_url("hedge-slow")), endpoint("hedge-fast", sim.base_url("hedge-fast"))],
            },
            # A request fault is not retried down the chain (ctx-small-2 would
            # refuse it too); it moves to the group declared for it.
            "ctx-small": {
                **failover,
                "request_error_fallback": "ctx-large",
                "endpoints": [endpoint("ctx-small-1", sim.base_url("ctx-small")), endpoint("ctx-small-2", sim.base_url("ctx-small"))],
            },
            "ctx-large": {**failover, "endpoints": [endpoint("ctx-large", sim.base_url("ctx-large"))]},
            "ctx-nowhere": {**failover, "endpoints": [endpoint("ctx-nowhere-1", sim.base_url("ctx-small")), endpoint("ctx-nowhere-2", sim.base_url("ctx-small"))]},
            "notes-anthropic": {**ordered, "endpoints": [
                endpoint("notes-an", sim.root_url("notes-an"), provider="anthropic", model="claude-haiku-4-5")]},
            # A catalog model served by the simulator: priced and listed like
            # the catalog's gpt-4o-mini (a ``catalog:`` endpoint name).
            "gpt-4o-mini": {**ordered, "endpoints": [endpoint("catalog:gpt-4o-mini", sim.base_url("backup"))]},
            "drops": {**ordered, "endpoints": [endpoint("drop-a", sim.base_url("drop"))]},
            "malformed": {**ordered, "endpoints": [endpoint("malformed-a", sim.base_url("malformed"))]},
            "live": {
                "strategy": "latency-based",
                "latency": {"explore_share": 0.05},
                "endpoints": [endpoint(f"live-{x}", sim.base_url(f"lat-{x}")) for x in "abc"],
            },
            "least-busy": {
                "strategy": "least-busy",
                "endpoints": [endpoint(f"lb-{x}", sim.base_url("busy")) for x in "abc"],
            },
            "breaker": {
                **ordered,
                "breaker": {"consecutive_failures": 2, "cooldown_s": 30, "max_cooldown_s": 60},
                "endpoints": [endpoint("br-flaky", sim.base_url("flaky")), endpoint("br-backup", sim.base_url("backup"))],
            },
            "probed": {
                **ordered,
                "health_check": {"enabled": True, "interval_s": 0.3, "timeout_s": 0.3},
                "breaker": {"consecutive_failures": 2, "cooldown_s": 60, "max_cooldown_s": 60},
                "endpoints": [endpoint("probe-dead", refused_url.replace("/v1", "/dead/v1")), endpoint("probe-ok", sim.base_url("backup"))],
            },
        },
        "turn_log": {"sink": "local", "path": str(turn_log_path), "flush_interval_s": 0.5},
        # Routing and failover tests repeat identical requests: no cache here
        # (tests/test_e2e_cache.py runs an app with it on).
        "cache": {"enabled": False},
        "metrics": {
            "window_s": 60,
            "slot_s": 1,
            "report_interval_s": 0.2,
            "evaluate_interval_s": 0.5,
            "webhook_url_env": WEBHOOK_ENV,
            "alerts": [
                {"name": "slow-first-token", "metric": "ttft_p99_s", "threshold": 0.3, "model_group": "alerting",
                 "window_s": 4, "min_turns": 5, "cooldown_s": 0},
            ],
            # /metrics without the admin key: the scrape key, or an address
            # in TEST-NET-1 as one trusted proxy in front reports it.
            "scrape": {"key_hash": hash_key(SCRAPE_KEY), "networks": ["192.0.2.0/24"], "forwarded_hops": 1},
        },
        "auth": {
            "keys": [
                {"name": "tests", "hash": hash_key(TEST_KEY)},
                {"name": "narrow", "hash": hash_key(NARROW_KEY), "models": ["voice-fast"]},
                {"name": "limited", "hash": hash_key(LIMITED_KEY), "rate_limit_per_min": 3},
            ],
            "admin_key_hash": hash_key(ADMIN_KEY),
        },
    }


@pytest.fixture(scope="session")
def simulator():
    from simprovider import start_simulator

    with start_simulator(PROFILES) as sim:
        yield sim


@pytest.fixture(scope="session")
def turn_log_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("turnlog")


@pytest.fixture(scope="session")
def webhook():
    """A local receiver standing in for Slack's incoming webhook."""
    from nemo_turnlog.export_testing import LocalHttpReceiver

    with LocalHttpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def ray_session(webhook):
    """The one Ray instance of the test session, with Serve's flags set the
    way ``nemo-router run`` sets them."""
    from deployments.cli import DEFAULT_SERVE_MODE, apply_serve_mode
    from deployments.serve_ports import apply_serve_ports

    apply_serve_mode(os.environ.get("NEMO_TEST_SERVE_MODE", DEFAULT_SERVE_MODE))
    # Every port of this Serve instance derived from the test router's, so a
    # `make run` (or another test run) beside it never collides.
    apply_serve_ports(ROUTER_PORT)
    # Ray workers inherit this environment: fake AWS credentials only, so
    # the S3 sink can only ever reach the loopback S3 server of the tests.
    from nemo_turnlog.testing import AWS_ENV_TO_CLEAR, FAKE_AWS_ENV

    for name in AWS_ENV_TO_CLEAR:
        os.environ.pop(name, None)
    os.environ.update(FAKE_AWS_ENV)
    # The metrics hub reads its webhook URL from its environment at start-up.
    os.environ[WEBHOOK_ENV] = f"{webhook.url}/slack-hook"
    # The secrets suite's provider key: workers read keys from their
    # environment, which is fixed when Ray starts.
    os.environ[CANARY_PROVIDER_KEY_ENV] = CANARY_PROVIDER_KEY
    # As ``nemo-router run`` does: no 30 s wait for load balancers to
    # deregister an ingress replica Serve stops (each test app's delete).
    from deployments.local import _apply_local_drain_settings

    _apply_local_drain_settings()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def router(ray_session, simulator, turn_log_path):
    from deployments.local import deploy
    from router.config import parse_config

    config = parse_config(router_config(simulator, turn_log_path), source="<tests>")
    url = deploy(config)
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/health").status_code == 200
    return url


@pytest.fixture
def client(router):
    """An HTTP client carrying the test router's all-models key."""
    with httpx.Client(base_url=router, timeout=20, headers=AUTH) as http:
        yield http
