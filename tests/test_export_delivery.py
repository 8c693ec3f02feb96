"""Delivery plumbing: Secret, RetryPolicy, HttpPoster (mock transport, fake sleep), Outbox."""

from __future__ import annotations

import random
import threading
import time

import httpx
import pytest

from nemo_turnlog.delivery import HttpPoster, Outbox, RetryPolicy, Secret


def test_a_secret_never_shows_itself():
    secret = Secret("sk-very-secret")
    assert "sk-very-secret" not in f"{secret} {secret!r} {[secret]}"
    assert secret.reveal() == "sk-very-secret"
    with pytest.raises(ValueError):
        Secret("")


def test_backoff_doubles_up_to_the_ceiling_with_bounded_jitter():
    policy = RetryPolicy(max_attempts=6, initial_backoff_s=0.5, max_backoff_s=4.0)
    rng = random.Random(7)
    for retry, full in enumerate([0.5, 1.0, 2.0, 4.0, 4.0]):
        assert full / 2 <= policy.backoff_s(retry, rng) <= full
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def _poster(handler, sleeps: list[float], **policy) -> HttpPoster:
    policy = RetryPolicy(**{"max_attempts": 4, "initial_backoff_s": 0.1, "max_backoff_s": 5.0, **policy})
    return HttpPoster("test", policy=policy, transport=httpx.MockTransport(handler), sleep=sleeps.append, rng=random.Random(1))


def test_retry_after_is_honoured_up_to_the_ceiling():
    answers = iter([
        httpx.Response(429, headers={"retry-after": "3"}),
        httpx.Response(503, headers={"retry-after": "60"}),
        httpx.Response(200),
    ])
    sleeps: list[float] = []
    response = _poster(lambda request: next(answers), sleeps).post("http://x/y", json={"a": 1}, headers={"k": "v"})
    assert response.status_code == 200 and sleeps == [3.0, 5.0]


def test_client_errors_are_not_retried_and_server_errors_are_bounded():
    calls = []

    def answer(status):
        def handler(request):
            calls.append(request.url.path)
            return httpx.Response(status)

        return handler

    sleeps: list[float] = []
    assert _poster(answer(400), sleeps).post("http://x/bad", json={}, headers={}) is None
    assert _poster(answer(502), sleeps).post("http://x/down", json={}, headers={}) is None
    assert calls == ["/bad"] + ["/down"] * 4 and len(sleeps) == 3


def test_outbox_delivers_in_batches_and_drops_the_oldest_when_full():
    gate = threading.Event()
    batches: list[list[int]] = []

    def deliver(batch):
        gate.wait(5)
        batches.append(batch)
        return True

    outbox: Outbox[int] = Outbox(deliver, name="test", max_batch=2, max_items=3)
    outbox.put([0])  # the thread takes it and waits at the gate
    while outbox.stats()["queued"]:
        time.sleep(0.001)
    outbox.put(range(1, 6))  # room for 3: 1 and 2 are dropped
    gate.set()
    outbox.close()
    assert batches == [[0], [3, 4], [5]]
    assert outbox.stats() == {"delivered": 4, "failed": 0, "dropped": 2, "queued": 0}
    outbox.put([9])
    assert outbox.stats()["dropped"] == 3  # after close


def test_a_raising_deliver_is_counted_and_the_thread_goes_on():
    seen = []

    def deliver(batch):
        seen.append(batch)
        if batch == ["bad"]:
            raise RuntimeError("boom")
        return True

    outbox: Outbox[str] = Outbox(deliver, name="test", max_batch=1)
    outbox.put(["bad", "good"])
    outbox.close()
    assert seen == [["bad"], ["good"]] and outbox.stats()["failed"] == 1 and outbox.stats()["delivered"] == 1
