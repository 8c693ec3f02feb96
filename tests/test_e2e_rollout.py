"""Config rollout end to end: the router redeployed while turns stream,
the way ``serve deploy`` does it (the same Serve config sent to the
controller, naming the edited router config file, with its new
``config_sha256``; Serve's build task runs ``deployments.app:app``). The redeploy adds a model group, changes a group's strategy,
rotates a key and adds an alert rule (and changes a health check). The
streams in flight complete whole; within seconds the new group serves, the
new strategy routes, the old key is refused and the new one accepted, and
the new alert fires through the webhook; the tracker is the same actor,
reconfigured in place with its state carried over, and the old health
prober is gone. Killed afterwards, the tracker is restarted by Ray with
the new config (the deploy recorded it), not the one it was first made
with.

The test runs its own app on the shared Serve instance (route prefix
``/rollout``, its own tracker, hub and keystore) against a simulator of its
own (its profiles are its own).
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

pytestmark = pytest.mark.ray

APP = "nemo-router-rollout"
PREFIX = "/rollout"
TRACKER = "nemo-tracker-rollout"
KEYSTORE = "nemo-keystore-rollout"
NAMESPACE = "nemo-router"
OLD_KEY, NEW_KEY, ADMIN_KEY = "sk-rollout-old", "sk-rollout-new", "sk-rollout-admin"
STEADY_KEY = "sk-rollout-steady"  # a key of both configs: its turns go on through the redeploy
STREAM_TOKENS = 100
STREAM_EVERY_S = 2.0  # a new stream this often until the new replicas serve
PROFILES = {
    # 10 s a stream, one started every 2 s: whenever the new replicas come
    # up (8 to 23 s into a redeploy here), the old ones are stopped with
    # streams running.
    "ro-long": {"ttft_ms": 20, "token_interval_ms": 100, "tokens": STREAM_TOKENS},
    "ro-fast": {"ttft_ms": 10, "token_interval_ms": 1, "tokens": 3},
}
ALERT = "rollout-new-group-slow"
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def rollout_sim():
    from simprovider import start_simulator

    with start_simulator(PROFILES) as sim:
        yield sim


def rollout_config(sim, version: int) -> dict:
    """The router config before (1) and after (2) the redeploy."""
    from conftest import WEBHOOK_ENV
    from router.keys import hash_key

    def endpoint(name, profile, **extra):
        return {"name": name, "base_url": sim.base_url(profile), "model": "sim-model"} | extra

    voice = {"strategy": "ordered", "endpoints": [endpoint("ro-1", "ro-fast"), endpoint("ro-2", "ro-fast")]}
    if version == 2:  # the strategy changes, and the weights make its choice plain
        voice = {"strategy": "weighted-shuffle", "endpoints": [
            endpoint("ro-1", "ro-fast", weight=0.0001), endpoint("ro-2", "ro-fast", weight=1000)]}
    groups = {
        "ro-stream": {"endpoints": [endpoint("ro-s", "ro-long")], "timeouts": {"total_s": 60}},
        "ro-voice": voice | {"health_check": {"enabled": True, "interval_s": 1.0 * version, "timeout_s": 1.0}},
    }
    alerts = []
    if version == 2:
        groups["ro-new"] = {"endpoints": [endpoint("ro-n", "ro-fast")]}
        alerts = [{"name": ALERT, "metric": "ttft_p99_s", "threshold": 0.0001, "model_group": "ro-new",
                   "window_s": 5, "min_turns": 3, "cooldown_s": 0}]
    key = {"name": f"key-v{version}", "hash": hash_key(OLD_KEY if version == 1 else NEW_KEY), "rate_limit_per_min": 10_000}
    return {
        "model_groups": groups,
        "server": {"stop_grace_s": 20},  # the old replicas' drain: longer than a stream
        "deployments": {"tracker_name": TRACKER, "keystore_name": KEYSTORE, "report_interval_s": 0.05},
        "turn_log": {"sink": "none"},
        "cache": {"enabled": False},
        "metrics": {"window_s": 10, "slot_s": 1, "report_interval_s": 0.2, "evaluate_interval_s": 0.3,
                    "webhook_url_env": WEBHOOK_ENV, "alerts": alerts},
        "auth": {"keys": [key, {"name": "steady", "hash": hash_key(STEADY_KEY)}], "admin_key_hash": hash_key(ADMIN_KEY)},
    }


def serve_deploy(config_file, config: dict | None) -> None:
    """Write ``config`` to the file and send Serve's config for it, as
    ``serve deploy`` does (None: an empty Serve config, deleting the app).
    Returns once the controller has it; the build runs on the cluster."""
    import hashlib

    import yaml
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeApplicationSchema, ServeDeploySchema

    applications = []
    if config is not None:
        config_file.write_text(yaml.safe_dump(config))
        args = {"config_path": str(config_file), "config_sha256": hashlib.sha256(config_file.read_bytes()).hexdigest()}
        applications = [ServeApplicationSchema(name=APP, route_prefix=PREFIX, import_path="deployments.app:app", args=args)]
    _get_global_client().deploy_apps(ServeDeploySchema(applications=applications))


def app_running() -> bool:
    from ray import serve

    app = serve.status().applications.get(APP)
    return app is not None and app.status == "RUNNING" and all(d.status == "HEALTHY" for d in app.deployments.values())


class Stream:
    """One streamed turn read on a thread: its words, errors and [DONE]."""

    def __init__(self, url: str):
        self.url = url
        self.first_word = threading.Event()
        self.words, self.errors, self.done, self.status = [], [], False, None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._read()
        except httpx.HTTPError as error:  # a stream the redeploy cut
            self.errors.append(f"{type(error).__name__}: {error}")

    def _read(self) -> None:
        body = {"model": "ro-stream", "stream": True, "messages": USER}
        headers = {"authorization": f"Bearer {STEADY_KEY}"}
        with httpx.stream("POST", f"{self.url}/v1/chat/completions", json=body, headers=headers, timeout=60) as response:
            self.status = response.status_code
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    self.done = True
                    continue
                event = json.loads(line[len("data: "):])
                if "error" in event:
                    self.errors.append(event["error"])
                for choice in event.get("choices", []):
                    content = choice.get("delta", {}).get("content")
                    if content:
                        self.words += content.split()
                        self.first_word.set()


class SteadyTurns:
    """Short turns, one after another on a thread, until stopped: their
    statuses, and the longest one took (seconds)."""

    def __init__(self, base: str):
        self.base, self.statuses, self.longest_s = base, [], 0.0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                self.statuses.append(turn(self.base, STEADY_KEY, "ro-voice").status_code)
            except httpx.HTTPError as error:  # a turn the redeploy dropped
                self.statuses.append(f"{type(error).__name__}: {error}")
            self.longest_s = max(self.longest_s, time.monotonic() - sent)
            self._stop.wait(0.1)

    def stop(self) -> list[int]:
        self._stop.set()
        self.thread.join(30)
        return self.statuses


def new_replicas_serve(base: str) -> bool | str:
    """Whether the new key is accepted yet (only the new replicas know it);
    a transport error's text if the turn got no answer at all."""
    try:
        return turn(base, NEW_KEY, "ro-voice").status_code == 200
    except httpx.HTTPError as error:
        return f"{type(error).__name__}: {error}"


def wait_until(condition, what: str, timeout_s: float = 20.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def turn(base: str, key: str, model: str) -> httpx.Response:
    return httpx.post(f"{base}/v1/chat/completions", json={"model": model, "messages": USER},
                      headers={"authorization": f"Bearer {key}"}, timeout=20)


def routing(base: str) -> dict:
    return httpx.get(f"{base}/v1/routing", headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=10).json()["endpoints"]


def routing_or_none(base: str) -> dict:
    response = httpx.get(f"{base}/v1/routing", headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)
    return response.json()["endpoints"] if response.status_code == 200 else {}


def router_actors() -> dict[str, str]:
    """This router's live named actors -> their actor ids."""
    import ray

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["namespace"] == NAMESPACE and a["name"].startswith((TRACKER, KEYSTORE))]
    return {name: ray.get_actor(name, namespace=NAMESPACE)._actor_id.hex() for name in names}


def webhook_texts(webhook) -> list[str]:
    return [r.json()["text"] for r in webhook.requests if r.path == "/slack-hook"]


def test_a_redeploy_reaches_every_component_without_dropping_turns(router, rollout_sim, webhook, tmp_path):
    from deployments.named_actor import retire

    base = f"{router}{PREFIX}"
    config_file = tmp_path / "router.yaml"
    serve_deploy(config_file, rollout_config(rollout_sim, 1))
    try:
        wait_until(app_running, "the first deploy runs", 60)
        # Before: the old config everywhere, and some routing signal to carry.
        for _ in range(3):
            response = turn(base, OLD_KEY, "ro-voice")
            assert response.status_code == 200 and response.headers["x-nemo-endpoint"] == "ro-1"
        assert turn(base, OLD_KEY, "ro-new").status_code == 404
        signal = wait_until(lambda: (r := routing(base))["ro-1"]["turns"] >= 3 and r, "the tracker has the turns")
        before = router_actors()
        old_probers = {n for n in before if n.startswith(f"{TRACKER}-health-")}
        assert len(old_probers) == 1 and {TRACKER, f"{TRACKER}-metrics", KEYSTORE} <= set(before)

        # The redeploy, with turns streaming through the old replicas.
        streams = [Stream(base) for _ in range(2)]
        for stream in streams:
            assert stream.first_word.wait(10), "a stream never started"
        steady = SteadyTurns(base)
        started = time.monotonic()
        serve_deploy(config_file, rollout_config(rollout_sim, 2))
        while (served := new_replicas_serve(base)) is not True:
            assert served is False, f"a turn got no answer during the redeploy: {served}"
            assert time.monotonic() - started < 60, "the new replicas never served"
            if time.monotonic() - started > STREAM_EVERY_S * (len(streams) - 1):
                streams.append(Stream(base))
            time.sleep(0.1)
        replaced_s = time.monotonic() - started
        in_flight = sum(s.thread.is_alive() for s in streams)
        assert in_flight, "the streams ended before the new replicas took over"
        for stream in streams:
            stream.thread.join(30)
            assert (stream.status, stream.errors, stream.done) == (200, [], True)
            assert stream.words == [f"w{i}" for i in range(1, STREAM_TOKENS + 1)], "a stream in flight lost words"
        wait_until(app_running, "the redeploy is done", 60)
        redeploy_s = time.monotonic() - started
        # New turns were served throughout: the new replicas started before the old stopped.
        statuses = steady.stop()
        assert len(statuses) >= 10 and set(statuses) == {200}, statuses

        # The new config in force, everywhere, within seconds.
        in_force = time.monotonic()
        wait_until(lambda: turn(base, NEW_KEY, "ro-new").status_code == 200, "the new group serves with the new key")
        wait_until(lambda: turn(base, OLD_KEY, "ro-voice").status_code == 401, "the old key is refused")
        assert [turn(base, NEW_KEY, "ro-voice").headers["x-nemo-endpoint"] for _ in range(5)] == ["ro-2"] * 5
        after = routing(base)
        assert {after[n]["strategy"] for n in ("ro-1", "ro-2")} == {"weighted-shuffle"}
        assert after["ro-1"]["turns"] >= signal["ro-1"]["turns"]  # carried over, not started afresh
        assert after["ro-n"]["group"] == "ro-new"
        for _ in range(4):
            assert turn(base, NEW_KEY, "ro-new").status_code == 200
        wait_until(lambda: [t for t in webhook_texts(webhook) if ALERT in t and "FIRING" in t], "the new alert rule fires")
        in_force_s = time.monotonic() - in_force

        # The same tracker, hub and keystore (reconfigured in place); the
        # old prober gone, the new one running.
        now = router_actors()
        for name in (TRACKER, f"{TRACKER}-metrics", KEYSTORE):
            assert now[name] == before[name], f"{name} was replaced, not reconfigured"
        new_probers = {n for n in now if n.startswith(f"{TRACKER}-health-")}
        assert len(new_probers) == 1 and not new_probers & old_probers
        # Ray restarts the tracker with the latest deploy's config, not the first.
        import ray

        ray.kill(ray.get_actor(TRACKER, namespace=NAMESPACE), no_restart=False)
        wait_until(lambda: "ro-n" in routing_or_none(base), "the restarted tracker routes the new group", 30)
        print(f"new replicas serving {replaced_s:.1f} s into the redeploy ({in_flight} of {len(streams)} streams "
              "in flight then), "
              f"old ones gone at {redeploy_s:.1f} s; every change in force {in_force_s:.1f} s after that; "
              f"{len(statuses)} turns during it, all 200, the longest {steady.longest_s:.2f} s")
    finally:
        serve_deploy(config_file, None)
        for name in router_actors():
            retire(name, NAMESPACE)
