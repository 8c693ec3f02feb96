"""API keys: hashing, the three refusals in OpenAI's shape, constant-time
matching, no key text anywhere, and an exact rate limiter. Pure."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import router.keys.keyring as keyring_module
from router.keys import (
    ANONYMOUS,
    LOCAL_ADMIN_KEY,
    LOCAL_KEY,
    AuthConfig,
    AuthenticationError,
    KeyRing,
    MissingApiKey,
    PermissionDenied,
    RateLimited,
    SlidingWindowLimiter,
    generate_key,
    hash_key,
    local_auth_config,
    parse_key_hash,
)

VOICE_KEY = "sk-nemo-voice-0123456789abcdef"
BATCH_KEY = "sk-nemo-batch-fedcba9876543210"
ADMIN_KEY = "sk-nemo-admin-5555555555555555"
SECRETS = (VOICE_KEY, BATCH_KEY, ADMIN_KEY)


def auth_config(**changes) -> AuthConfig:
    raw = {
        "keys": [
            {"name": "voice-app", "hash": hash_key(VOICE_KEY), "models": ["voice-fast", "gpt-4o*"], "rate_limit_per_min": 2},
            {"name": "batch", "hash": hash_key(BATCH_KEY)},
        ],
        "admin_key_hash": hash_key(ADMIN_KEY),
    }
    raw.update(changes)
    return AuthConfig.model_validate(raw)


RING = KeyRing(auth_config())


def bearer(key: str) -> str:
    return f"Bearer {key}"


def assert_no_secret(*things):
    for thing in things:
        for text in (str(thing), repr(thing)):
            for secret in SECRETS:
                assert secret not in text
                assert secret[8:] not in text


# -- hashing ------------------------------------------------------------------

def test_hash_key_is_prefixed_sha256_hex():
    assert hash_key("test") == "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    with pytest.raises(ValueError):
        hash_key("")


def test_configured_hashes_are_normalised():
    digest = hash_key("test")[7:]
    assert parse_key_hash(digest.upper()) == parse_key_hash("SHA256:" + digest) == "sha256:" + digest


def test_a_key_pasted_as_its_hash_is_refused_without_quoting_it():
    with pytest.raises(ValidationError) as caught:
        auth_config(admin_key_hash=ADMIN_KEY)
    assert all(ADMIN_KEY not in error["msg"] for error in caught.value.errors())


def test_generated_keys_are_long_random_and_prefixed():
    keys = {generate_key() for _ in range(20)}
    assert len(keys) == 20 and all(k.startswith("sk-nemo-") and len(k) >= 48 for k in keys)


@pytest.mark.parametrize(
    "changes",
    [
        {"keys": [{"name": "a", "hash": hash_key("x")}, {"name": "a", "hash": hash_key("y")}]},
        {"keys": [{"name": "a", "hash": hash_key("x")}, {"name": "b", "hash": hash_key("x")}]},
        {"admin_key_hash": hash_key(VOICE_KEY)},
        {"keys": [{"name": "a", "hash": hash_key("x"), "colour": "red"}]},
        {"keys": [{"name": "a", "hash": hash_key("x"), "rate_limit_per_min": 0}]},
        {"keys": [{"name": "a", "hash": hash_key("x"), "models": []}]},
    ],
)
def test_bad_auth_config_is_rejected(changes):
    with pytest.raises(ValidationError):
        auth_config(**changes)


# -- authentication -------------------------------------------------------------

def test_a_configured_key_authenticates_as_its_name():
    key = RING.authenticate(bearer(VOICE_KEY))
    assert key.name == key.key_id == "voice-app"
    assert key.fingerprint == hash_key(VOICE_KEY)[7:15]
    assert key.rate_limit_per_min == 2
    assert RING.authenticate(f"bearer   {BATCH_KEY}  ").name == "batch"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", f"Basic {VOICE_KEY}", VOICE_KEY])
def test_no_bearer_key_is_401_as_openai_sends_it(header):
    with pytest.raises(MissingApiKey) as caught:
        RING.authenticate(header)
    error = caught.value
    assert error.http_status == 401
    assert error.to_openai() == {
        "error": {"message": error.message, "type": "invalid_request_error", "param": None, "code": None}
    }
    assert "Authorization: Bearer" in error.message
    assert_no_secret(error, error.to_openai())


@pytest.mark.parametrize("key", ["sk-nemo-wrong", VOICE_KEY + "x", VOICE_KEY[:-1], hash_key(VOICE_KEY)])
def test_a_wrong_key_is_401_invalid_api_key_and_never_echoed(key):
    with pytest.raises(AuthenticationError) as caught:
        RING.authenticate(bearer(key))
    error = caught.value
    assert error.http_status == 401
    assert error.to_openai()["error"]["type"] == "invalid_request_error"
    assert error.to_openai()["error"]["code"] == "invalid_api_key"
    assert key not in json.dumps(error.to_openai()) and key not in repr(error)


def test_every_configured_hash_is_compared_in_constant_time(monkeypatch):
    calls = []

    def compare(a, b):
        calls.append((len(a), len(b)))
        return a == b

    monkeypatch.setattr(keyring_module.hmac, "compare_digest", compare)
    ring = KeyRing(auth_config())
    assert ring.authenticate(bearer(VOICE_KEY)).name == "voice-app"  # the first key matches...
    assert calls == [(32, 32), (32, 32)]  # ...and the second is still compared
    calls.clear()
    with pytest.raises(AuthenticationError):
        ring.authenticate(bearer("sk-nemo-wrong"))
    assert len(calls) == 2


def test_nothing_that_holds_a_key_shows_it():
    key = RING.authenticate(bearer(VOICE_KEY))
    assert_no_secret(key, RING, auth_config(), auth_config().model_dump())


def test_a_router_without_keys_is_open():
    ring = KeyRing(AuthConfig())
    assert ring.open
    assert ring.authenticate(None) is ANONYMOUS
    ring.authorize(ANONYMOUS, "anything")
    ring.authenticate_admin(None)


# -- authorization ----------------------------------------------------------------

def test_a_model_outside_the_key_list_is_403():
    key = RING.authenticate(bearer(VOICE_KEY))
    RING.authorize(key, "voice-fast")
    RING.authorize(key, "gpt-4o-mini")  # glob
    with pytest.raises(PermissionDenied) as caught:
        RING.authorize(key, "claude-opus-4-1")
    error = caught.value
    assert error.http_status == 403
    assert error.to_openai()["error"] == {
        "message": error.message, "type": "invalid_request_error", "param": "model", "code": "model_not_allowed",
    }
    assert "voice-app" in error.message and "claude-opus-4-1" in error.message
    RING.authorize(RING.authenticate(bearer(BATCH_KEY)), "claude-opus-4-1")  # default "*"


# -- admin ----------------------------------------------------------------------

def test_only_the_admin_key_opens_admin_routes():
    RING.authenticate_admin(bearer(ADMIN_KEY))
    with pytest.raises(PermissionDenied) as caught:
        RING.authenticate_admin(bearer(VOICE_KEY))
    assert caught.value.http_status == 403 and caught.value.code == "admin_key_required"
    with pytest.raises(MissingApiKey):
        RING.authenticate_admin(None)
    with pytest.raises(AuthenticationError):
        RING.authenticate_admin(bearer("sk-nemo-wrong"))
    with pytest.raises(AuthenticationError):
        RING.authenticate(bearer(ADMIN_KEY))  # the admin key is not a client key


def test_admin_routes_are_closed_on_a_keyed_router_without_an_admin_key():
    ring = KeyRing(auth_config(admin_key_hash=None))
    with pytest.raises(PermissionDenied) as caught:
        ring.authenticate_admin(bearer(VOICE_KEY))
    assert caught.value.code == "admin_disabled"


def test_the_local_keys_of_the_embedded_default():
    ring = KeyRing(local_auth_config())
    assert ring.authenticate(bearer(LOCAL_KEY)).key_id == "local"
    ring.authenticate_admin(bearer(LOCAL_ADMIN_KEY))


# -- rate limiting ------------------------------------------------------------------

class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_limit_is_exact_over_a_sliding_minute():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(clock=clock)
    assert limiter.admit("k", 3) == (True, 0.0)
    clock.now += 10
    assert limiter.admit("k", 3).ok
    clock.now += 10
    assert limiter.admit("k", 3).ok
    clock.now += 10
    assert limiter.admit("k", 3) == (False, 30.0)  # the first turn leaves at +60
    clock.now += 29.5
    assert limiter.admit("k", 3) == (False, 0.5)
    clock.now += 0.5
    assert limiter.admit("k", 3) == (True, 0.0)
    assert limiter.admit("k", 3) == (False, 10.0)
    assert limiter.in_window("k") == 3
    assert limiter.admit("other", 3).ok  # keys are independent


def test_a_lowered_limit_waits_for_enough_turns_to_leave():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(clock=clock)
    for _ in range(4):
        assert limiter.admit("k", 4).ok
        clock.now += 1
    assert limiter.admit("k", 2) == (False, 58.0)  # the turn at +2 must leave: then 1 remains


def test_idle_keys_are_forgotten():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(clock=clock)
    limiter.admit("idle", 5)
    clock.now += 61
    limiter.admit("busy", 5)
    assert limiter.in_window("idle") == 0
    assert "idle" not in limiter._admitted


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.lists(st.floats(0, 30, allow_nan=False), max_size=40))
def test_no_window_ever_holds_more_than_the_limit_and_no_turn_is_refused_needlessly(limit, gaps):
    clock = FakeClock(0.0)
    limiter = SlidingWindowLimiter(window_s=60.0, clock=clock)
    admitted: list[float] = []
    for gap in gaps:
        clock.now += gap
        recent = [t for t in admitted if t > clock.now - 60.0]
        ok, retry_after_s = limiter.admit("k", limit)
        assert ok == (len(recent) < limit)
        if ok:
            admitted.append(clock.now)
        else:
            assert 0 < retry_after_s <= 60.0
            assert min(60.0, max(0.001, recent[len(recent) - limit] + 60.0 - clock.now)) == pytest.approx(retry_after_s)


def test_rate_limited_is_429_with_retry_after():
    error = RateLimited("voice-app", 2, 12.2)
    assert error.http_status == 429
    assert error.to_openai()["error"]["type"] == "requests"
    assert error.to_openai()["error"]["code"] == "rate_limit_exceeded"
    assert error.headers() == {"retry-after": "13"}
    assert RateLimited("k", 1, 0.0).headers() == {"retry-after": "1"}
