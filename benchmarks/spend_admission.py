"""What spend control costs an ingress replica per turn of a metered key:
admission from the replica's cached allowance, against one round trip to
the keystore actor (what a per-turn check would cost), and submitting the
fire-and-forget charge when a turn ends. One local Ray instance, one CPU,
about 20 s.

    python benchmarks/spend_admission.py
"""

from __future__ import annotations

import asyncio
import time

import ray

from deployments.keystore import get_or_create_keystore
from deployments.spend_gate import SpendGate
from router.config import parse_config
from router.keys import KeyRing, hash_key
from router.turn import TurnRequest

CONFIG = parse_config({
    "model_groups": {"g": {"endpoints": [{"name": "e", "base_url": "http://127.0.0.1:9/v1", "model": "m"}]}},
    "turn_log": {"sink": "none"},
    "deployments": {"keystore_name": "bench-keystore", "tracker_namespace": "bench-spend"},
    "auth": {"keys": [{"name": "trial", "hash": hash_key("sk-bench"), "credit_usd": 100.0}]},
})


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def measure(admissions: int = 20_000, round_trips: int = 300) -> None:
    key = KeyRing(CONFIG.auth).authenticate("Bearer sk-bench")
    gate = SpendGate(CONFIG)
    await gate.admit(key)  # the replica's first turn of the key asks the keystore
    started = time.perf_counter()
    for _ in range(admissions):
        await gate.admit(key)
    print(f"admission from the cached allowance: {(time.perf_counter() - started) / admissions * 1e6:.1f} us per turn")
    actor = ray.get_actor("bench-keystore", namespace="bench-spend")
    waits = []
    for _ in range(round_trips):
        started = time.perf_counter()
        await actor.allowance.remote("trial")
        waits.append((time.perf_counter() - started) * 1e3)
    print(f"one keystore round trip: p50 {percentile(waits, 0.5):.2f} ms, p99 {percentile(waits, 0.99):.2f} ms")
    turn = TurnRequest("bench", "g", ("e",), 1, {}, False, False, api_key_id="trial")
    submits = []
    for _ in range(round_trips):
        started = time.perf_counter()
        gate.charge(turn, 1e-6)
        submits.append((time.perf_counter() - started) * 1e6)
        await asyncio.sleep(0.005)  # one turn ending at a time
    print(f"submitting a turn's charge (not awaited): p50 {percentile(submits, 0.5):.0f} us, p99 {percentile(submits, 0.99):.0f} us")


def main() -> None:
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        get_or_create_keystore(CONFIG)
        asyncio.run(measure())
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
