"""The classification table: an upstream's error status and its structured
error type, per provider codec, decide one ``OutcomeKind``; retrying,
health and the client's status follow from it, and the plan walk and the
breaker read that same kind. Pure: recorded error bodies, no network."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil

import pytest

import router
import router.outcome
from router.breaker import BreakerState, CircuitBreaker
from router.config import BreakerConfig, parse_config
from router.errors import UpstreamStatusError
from router.outcome_kind import OutcomeKind
from router.plan_walk import PlanWalk
from router.providers import codec_for
from router.simulation import ManualClock

K = OutcomeKind


def openai(error_type: str | None = None, code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": "upstream says no", "type": error_type, "code": code}}).encode()


def anthropic(error_type: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": error_type, "message": "upstream says no"}}).encode()


def gemini(status: str, code: int, *, wrapped: bool = False) -> bytes:
    error = {"error": {"code": code, "message": "upstream says no", "status": status}}
    return json.dumps([error] if wrapped else error).encode()


# provider, HTTP status, body -> kind, client status. Retryable and health follow the kind (checked below).
TABLE = [
    # OpenAI-compatible: the status decides, whatever the type says.
    ("openai", 503, openai("invalid_request_error"), K.UPSTREAM_ERROR, 502),
    ("openai", 500, b"", K.UPSTREAM_ERROR, 502),
    ("openai", 429, b"", K.RATE_LIMITED, 502),
    ("openai", 429, openai("insufficient_quota", "insufficient_quota"), K.RATE_LIMITED, 502),
    ("openai", 400, openai("invalid_request_error", "context_length_exceeded"), K.REQUEST_REJECTED, 400),
    ("openai", 400, b"", K.REQUEST_REJECTED, 400),
    ("openai", 404, b"not json", K.REQUEST_REJECTED, 404),
    ("openai", 422, openai(), K.REQUEST_REJECTED, 422),
    # Anthropic: error.type overrules the status where it says whose fault it is.
    ("anthropic", 400, anthropic("overloaded_error"), K.UPSTREAM_ERROR, 502),
    ("anthropic", 529, anthropic("overloaded_error"), K.UPSTREAM_ERROR, 502),
    ("anthropic", 500, anthropic("api_error"), K.UPSTREAM_ERROR, 502),
    ("anthropic", 503, anthropic("invalid_request_error"), K.REQUEST_REJECTED, 400),
    ("anthropic", 400, anthropic("invalid_request_error"), K.REQUEST_REJECTED, 400),
    ("anthropic", 413, anthropic("request_too_large"), K.REQUEST_REJECTED, 413),
    ("anthropic", 429, anthropic("rate_limit_error"), K.RATE_LIMITED, 502),
    ("anthropic", 429, b"", K.RATE_LIMITED, 502),
    ("anthropic", 400, anthropic("a_type_from_the_future"), K.REQUEST_REJECTED, 400),
    ("anthropic", 404, b"", K.REQUEST_REJECTED, 404),
    # Gemini: error.status (google.rpc code names).
    ("gemini", 429, gemini("RESOURCE_EXHAUSTED", 429), K.RATE_LIMITED, 502),
    ("gemini", 400, gemini("RESOURCE_EXHAUSTED", 400), K.UPSTREAM_ERROR, 502),
    ("gemini", 400, gemini("INVALID_ARGUMENT", 400), K.REQUEST_REJECTED, 400),
    ("gemini", 400, gemini("INVALID_ARGUMENT", 400, wrapped=True), K.REQUEST_REJECTED, 400),
    ("gemini", 500, gemini("INVALID_ARGUMENT", 500), K.REQUEST_REJECTED, 400),
    ("gemini", 503, gemini("UNAVAILABLE", 503), K.UPSTREAM_ERROR, 502),
    ("gemini", 500, gemini("INTERNAL", 500), K.UPSTREAM_ERROR, 502),
    ("gemini", 504, gemini("DEADLINE_EXCEEDED", 504), K.UPSTREAM_ERROR, 502),
    ("gemini", 404, gemini("NOT_FOUND", 404), K.REQUEST_REJECTED, 404),
    ("gemini", 429, b"", K.RATE_LIMITED, 502),
    ("gemini", 400, b"", K.REQUEST_REJECTED, 400),
]

# What each kind means for the rest of the router.
RETRYABLE = {K.UPSTREAM_ERROR: True, K.RATE_LIMITED: True, K.REQUEST_REJECTED: False}
COUNTS_AGAINST_HEALTH = {K.UPSTREAM_ERROR: True, K.RATE_LIMITED: True, K.REQUEST_REJECTED: False}


def case_id(case) -> str:
    provider, status, body, kind, _ = case
    try:
        detail = json.loads(body)
        detail = detail[0] if isinstance(detail, list) else detail
        error = detail.get("error") or {}
        label = error.get("type") or error.get("status") or error.get("code") or "untyped"
    except (json.JSONDecodeError, AttributeError):
        label = "no-json"
    return f"{provider}-{status}-{label}"


def classify(provider: str, status: int, body: bytes, retry_after: str | None = None) -> UpstreamStatusError:
    return codec_for(provider).error_from_status(status, body, retry_after, endpoint="e")


@pytest.mark.parametrize("case", TABLE, ids=[case_id(c) for c in TABLE])
def test_the_codec_classifies_by_status_and_provider_type(case):
    provider, status, body, kind, client_status = case
    error = classify(provider, status, body)
    assert isinstance(error, UpstreamStatusError)
    assert error.kind is kind
    assert error.retryable is RETRYABLE[kind]
    assert error.counts_against_health is COUNTS_AGAINST_HEALTH[kind]
    assert error.http_status == client_status
    assert error.status_code == status and error.endpoint == "e"
    expected_type = "invalid_request_error" if kind is K.REQUEST_REJECTED else "upstream_error"
    assert error.to_openai()["error"]["type"] == expected_type


def test_the_anthropic_overloaded_400_is_the_providers_fault():
    error = classify("anthropic", 400, anthropic("overloaded_error"))
    assert (error.kind, error.retryable, error.counts_against_health, error.http_status) == (K.UPSTREAM_ERROR, True, True, 502)
    assert error.provider_error_type == "overloaded_error"


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_retry_after_is_read_from_the_header(provider):
    assert classify(provider, 429, b"", retry_after="3").retry_after_s == 3.0
    assert classify(provider, 503, b"", retry_after="3").retry_after_s == 3.0


def test_gemini_retry_delay_stands_in_for_a_missing_retry_after():
    body = json.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota",
                                 "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]}}).encode()
    assert classify("gemini", 429, body).retry_after_s == 7.0
    assert classify("gemini", 429, body, retry_after="2").retry_after_s == 2.0


# -- every reader reads the same kind ---------------------------------------

CATALOG_CONFIG = parse_config({"model_groups": {
    "g": {"endpoints": [{"name": n, "base_url": "http://x/v1", "model": "m"} for n in ("a", "b")],
          "request_error_fallback": "big"},
    "big": {"endpoints": [{"name": "big", "base_url": "http://x/v1", "model": "m"}]},
}})
CATALOG = {e.name: (e, g.timeouts) for g in CATALOG_CONFIG.model_groups.values() for e in g.endpoints}


@pytest.mark.parametrize("case", TABLE, ids=[case_id(c) for c in TABLE])
def test_the_plan_walk_moves_on_by_the_kind(case):
    provider, status, body, kind, _ = case
    walk = PlanWalk(("a", "b"), 3, 10.0, CATALOG, request_error_endpoints=("big",), clock=ManualClock(0.0))
    walk.next()
    assert walk.after_failure(classify(provider, status, body))
    # Retryable: down the chain. A rejected request: to the group declared for it.
    assert walk.next().endpoint.name == ("b" if RETRYABLE[kind] else "big")


@pytest.mark.parametrize("case", TABLE, ids=[case_id(c) for c in TABLE])
def test_the_breaker_counts_the_failure_by_the_kind(case):
    provider, status, body, kind, _ = case
    breaker = CircuitBreaker(BreakerConfig(consecutive_failures=1), ManualClock(0.0))
    breaker.observe(classify(provider, status, body).kind)
    expected = BreakerState.OPEN if COUNTS_AGAINST_HEALTH[kind] else BreakerState.CLOSED
    assert breaker.state() is expected


def test_a_rejected_request_twice_ends_the_turn():
    walk = PlanWalk(("a", "b"), 3, 10.0, CATALOG, request_error_endpoints=("big",), clock=ManualClock(0.0))
    rejected = classify("anthropic", 400, anthropic("invalid_request_error"))
    walk.next()
    assert walk.after_failure(rejected)
    walk.next()
    assert not walk.after_failure(rejected)


# -- one classifier ---------------------------------------------------------


def test_outcome_has_no_second_classifier():
    assert not hasattr(router.outcome, "outcome_kind_of")


CLASSIFIERS = {
    ("router.errors", "kind_of_status"),
    ("router.providers.anthropic_response", "classify_error"),
    ("router.providers.gemini_response", "classify_error"),
}


def test_errors_are_classified_only_where_replies_are_parsed():
    """Every function of the pure core that names a kind classification is
    the status default or a provider codec's reader of its error type."""
    found = set()
    for module_info in pkgutil.walk_packages(router.__path__, "router."):
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if not inspect.isfunction(value) or value.__module__ != module.__name__:
                continue
            if "classif" in name or "kind_of" in name or "outcome_kind" in name:
                found.add((module.__name__, name))
    assert found == CLASSIFIERS
