"""The router on a three-node Ray cluster on this machine, losing nodes
under load; run by tests/test_e2e_multinode.py in a process of its own (the
test session's Ray is a single node, and a ``ray.cluster_utils.Cluster``
needs a Ray of its own).

    python tests/multinode_cluster.py --port 21900 --out result.json [--ray-port 22300] [--tmp DIR]

Topology (Ray custom resources; ``deployments.*_resources``):

==========  ==========================================  =============================================
node        resources                                   what lands there
==========  ==========================================  =============================================
head        ``nemo_ingress``                            GCS, Serve controller, the HTTP proxy, 2 ingress
worker-1/2  ``nemo_caller: 1``, ``nemo_state: 1``       one provider-caller each; the tracker and the
                                                        metrics hub on one of them
worker-3    the same, added after worker-x is lost      the replacement caller; the tracker once its
                                                        node is lost
==========  ==========================================  =============================================

The tracker is not on the head: the head holds the GCS and the Serve
controller, and removing it ends the cluster. It asks for ``nemo_state``,
which two nodes have, so it has somewhere to come back to.

Phases, each with streamed turns through the official ``openai`` client
over real HTTP to the Serve endpoint, against the simulated provider on
127.0.0.1, the turn log to a local folder every node shares:

1. ``spread``: turns routed, streamed and logged across nodes.
2. ``caller_lost``: the worker with a caller and no tracker is killed
   (its raylet and workers, as an instance that goes away) under load;
   then a replacement worker joins.
3. ``tracker_lost``: the tracker's worker (and the caller on it) is killed
   under load; the tracker comes back on the replacement; a fourth worker
   then joins.

Results go to ``--out`` as JSON (every turn's outcome, the topology, the
timings, and what was left running after the shutdown). Every wait has a
deadline; every process started here is ended by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "logging")]  # run as a script: the router's packages from this checkout
TOKENS = 24
WHOLE = " ".join(f"w{i}" for i in range(1, TOKENS + 1))
PROFILE = {"ttft_ms": 20, "token_interval_ms": 25, "tokens": TOKENS}  # ~0.6 s a turn
GROUP = "mn"
CONCURRENCY = 6
TOTAL_DEADLINE_S = 210.0
# How soon the GCS declares a silent node dead: a failed health check every
# second, three in a row (Ray's defaults: every 3 s, 5 in a row, after a 5 s
# delay, ~18 s measured here), so the suite does not wait out Ray's default.
# ``--ray-default-health-checks`` runs with Ray's own.
FAST_HEALTH_CHECKS = {
    "health_check_initial_delay_ms": 1000, "health_check_period_ms": 1000,
    "health_check_timeout_ms": 1000, "health_check_failure_threshold": 3,
}


def ray_ports(base: int, index: int) -> dict:
    """Node ``index``'s own ports: a block of 100 above ``base + 100``
    (the GCS is ``base`` itself), 60 of them for its worker processes."""
    block = base + 100 + 100 * index
    return {
        "node_manager_port": block,
        "object_manager_port": block + 1,
        "metrics_export_port": block + 2,
        "metrics_agent_port": block + 3,
        "dashboard_agent_listen_port": block + 4,
        "runtime_env_agent_port": block + 5,
        "min_worker_port": block + 20,
        "max_worker_port": block + 79,
    }


MAX_NODES = 5  # head + worker-1, -2, -3, -4: ports base .. base + 599


def router_config(sim, port: int, turn_log: Path) -> dict:
    return {
        "server": {"host": "127.0.0.1", "port": port, "stop_grace_s": 2},
        "model_groups": {GROUP: {
            "strategy": "least-busy",
            "timeouts": {"first_token_s": 3, "total_s": 30},
            "endpoints": [{"name": f"mn-{x}", "base_url": sim.base_url(f"mn-{x}"), "model": "sim-model"} for x in "ab"],
        }},
        # Long enough that a lost caller always has records in its buffer
        # (and its write-ahead log): the replacement caller writes them.
        "turn_log": {"sink": "local", "path": str(turn_log), "flush_interval_s": 2.0},
        "cache": {"enabled": False},
        "metrics": {"report_interval_s": 0.2},
        "deployments": {
            "ingress_replicas": 2, "caller_replicas": 2, "report_interval_s": 0.05,
            "ingress_resources": {"nemo_ingress": 0.01},
            "caller_resources": {"nemo_caller": 1},
            "actor_resources": {"nemo_state": 0.01},
        },
    }


class Scenario:
    def __init__(self, port: int, ray_port: int, tmp: Path, health_checks: dict | None = None):
        self.port, self.ray_port, self.tmp = port, ray_port, tmp
        self.health_checks = health_checks
        self.turn_log = tmp / "turnlog"
        self.result: dict = {"phases": {}, "timings_s": {}, "events": []}
        self.cluster = None
        self.sim = None
        self.workers: dict[str, object] = {}  # name -> ray node
        self.turns: list[dict] = []
        self.lost_callers: dict[str, float] = {}  # pid -> when its node was lost (wall clock)
        self._started = time.monotonic()

    # -- set-up -----------------------------------------------------------

    def environment(self) -> None:
        from deployments.cli import DEFAULT_SERVE_MODE, apply_serve_mode
        from deployments.local import _apply_local_drain_settings
        from deployments.serve_ports import apply_serve_ports

        # Read by every Ray process of this cluster when it starts.
        apply_serve_mode(os.environ.get("NEMO_TEST_SERVE_MODE", DEFAULT_SERVE_MODE))
        apply_serve_ports(self.port)
        _apply_local_drain_settings()
        # Ray's own files (and its "current cluster" address file) under our
        # folder: a plain ``ray.init()`` elsewhere on this machine must never
        # find this cluster.
        os.environ["RAY_TMPDIR"] = str(self.tmp)
        os.environ.pop("RAY_ADDRESS", None)
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "logging"), os.environ.get("PYTHONPATH", "")])

    def start(self) -> None:
        from ray.cluster_utils import Cluster

        from simprovider import start_simulator

        self.sim = start_simulator({f"mn-{x}": PROFILE for x in "ab"})
        started = time.monotonic()
        head_args = {
            "num_cpus": 1, "resources": {"nemo_ingress": 1}, "include_dashboard": False,
            "gcs_server_port": self.ray_port, "temp_dir": str(self.tmp / "ray"),
            "object_store_memory": 100 * 1024 * 1024, **ray_ports(self.ray_port, 0),
        }
        if self.health_checks:
            head_args["_system_config"] = dict(self.health_checks)  # Ray adds its own keys to it
        self.cluster = Cluster(initialize_head=True, head_node_args=head_args, shutdown_at_exit=True)
        self._next_index = 1
        for name in ("worker-1", "worker-2"):
            self.add_worker(name, wait=False)
        self.cluster.wait_for_nodes(timeout=60)
        self.cluster.connect(namespace="nemo-multinode")
        self.result["timings_s"]["cluster_start"] = round(time.monotonic() - started, 2)

        from ray import serve

        from deployments.app import APP_NAME, build_app
        from router.config import parse_config

        started = time.monotonic()
        config = parse_config(router_config(self.sim, self.port, self.turn_log), source="<multinode>")
        self.config = config
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": self.port})
        serve.run(build_app(config), name=APP_NAME, route_prefix="/")
        self.wait_for(lambda: len(self.alive("ProviderCaller")) == 2, 60, "two callers running")
        self.result["timings_s"]["deploy"] = round(time.monotonic() - started, 2)

    def add_worker(self, name: str, wait: bool = True):
        index = self._next_index
        self._next_index += 1
        assert index < MAX_NODES
        node = self.cluster.add_node(
            wait=wait, num_cpus=1, resources={"nemo_caller": 1, "nemo_state": 1},
            object_store_memory=80 * 1024 * 1024, **ray_ports(self.ray_port, index),
        )
        self.workers[name] = node
        return node

    def lose_node(self, name: str) -> None:
        """The node goes away as an instance does: every process of it at
        once (its raylet's children, its actors and replicas among them,
        then the raylet and the rest: Cluster.remove_node alone leaves the
        workers running until they notice)."""
        import psutil
        from ray._private import ray_constants

        pids = [pid for pid, node_name in self.topology()["caller_pids"].items() if node_name == name]
        node = self.workers.pop(name)
        raylet = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process
        killed = []
        for child in psutil.Process(raylet.pid).children(recursive=True):
            try:
                child.kill()
                killed.append(child.pid)
            except psutil.NoSuchProcess:
                continue
        self.cluster.remove_node(node, allow_graceful=False)
        self.event("lost", node=name, workers_killed=len(killed))
        self.lost_callers.update({pid: time.time() for pid in pids})
        # What each lost caller had not flushed: its write-ahead log's records.
        for pid in pids:
            lines = sum(len(path.read_bytes().splitlines()) - 1 for path in (self.turn_log / "_wal").glob(f"*+{pid}+*.wal"))
            self.result.setdefault("unflushed_records_of_lost_callers", {})[pid] = lines

    # -- what runs where ----------------------------------------------------

    def actors(self) -> list[dict]:
        import ray

        return list(ray._private.state.actors().values())

    def alive(self, deployment: str) -> list[dict]:
        return [a for a in self.actors() if a["State"] == "ALIVE" and a["ActorClassName"].endswith(f":{deployment}")]

    def two_live_callers(self) -> bool:
        """Two callers alive on nodes still in the cluster (until Ray has
        declared a lost node dead, its actors still read ALIVE)."""
        callers = self.topology()["callers"]
        return len(callers) == 2 and all(name in self.workers for name in callers)

    def tracker(self) -> dict | None:
        name = self.config.deployments.tracker_name
        for actor in self.actors():
            if actor["Name"] == name:
                return actor
        return None

    def node_name(self, node_id: str) -> str:
        if node_id == self.cluster.head_node.node_id:
            return "head"
        for name, node in self.workers.items():
            if node.node_id == node_id:
                return name
        return node_id[:8]

    def topology(self) -> dict:
        tracker = self.tracker()
        return {
            "ingress": sorted(self.node_name(a["Address"]["NodeID"]) for a in self.alive("Ingress")),
            "callers": sorted(self.node_name(a["Address"]["NodeID"]) for a in self.alive("ProviderCaller")),
            "caller_pids": {str(a["Pid"]): self.node_name(a["Address"]["NodeID"]) for a in self.alive("ProviderCaller")},
            "tracker": self.node_name(tracker["Address"]["NodeID"]) if tracker and tracker["State"] == "ALIVE" else None,
            "tracker_state": tracker["State"] if tracker else None,
        }

    def tracker_answers(self) -> bool:
        import ray

        options = self.config.deployments
        try:
            handle = ray.get_actor(options.tracker_name, namespace=options.tracker_namespace)
            return ray.get(handle.ping.remote(), timeout=1.0)
        except Exception:
            return False

    def wait_for(self, condition, timeout_s: float, what: str) -> float:
        started = time.monotonic()
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return round(time.monotonic() - started, 2)
            time.sleep(0.2)
        raise TimeoutError(f"{what}: not within {timeout_s} s")

    def event(self, what: str, **details) -> None:
        self.result["events"].append({"t_s": round(time.monotonic() - self._started, 2), "what": what, **details})

    # -- load ---------------------------------------------------------------

    async def one_turn(self, client, phase: str) -> dict:
        import openai

        rid = f"{phase}-{uuid.uuid4().hex[:10]}"
        turn = {"rid": rid, "phase": phase, "text": "", "error": None, "started": time.monotonic() - self._started}
        started = time.monotonic()
        try:
            stream = await client.chat.completions.create(
                model=GROUP, stream=True, messages=[{"role": "user", "content": "count"}],
                extra_headers={"x-request-id": rid},
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    turn["text"] += chunk.choices[0].delta.content
        except openai.APIError as exc:  # the router's SSE error event, or a refusal
            turn["error"] = f"{type(exc).__name__}: {exc}"[:300]
            turn["status_code"] = getattr(exc, "status_code", None)
        except Exception as exc:  # a timeout, a cut connection: neither is acceptable
            turn["error"] = f"unexpected {type(exc).__name__}: {exc}"[:300]
            turn["unexpected"] = True
        turn["duration_s"] = round(time.monotonic() - started, 3)
        turn["ended"] = round(time.monotonic() - self._started, 3)
        turn["whole"] = turn["text"] == WHOLE
        turn["clean_prefix"] = WHOLE.startswith(turn["text"])
        return turn

    async def load(self, phase: str, stop: asyncio.Event, turns: list[dict]) -> None:
        import openai

        async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key="sk-unused",
                                      timeout=30.0, max_retries=0) as client:
            async def worker():
                while not stop.is_set():
                    turns.append(await self.one_turn(client, phase))

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    async def run_phase(self, phase: str, action, settle) -> dict:
        """Load at CONCURRENCY; ``action`` (blocking, in a thread) once turns
        are flowing; load goes on until ``settle()`` holds (polled, bounded)."""
        turns: list[dict] = []
        stop = asyncio.Event()
        load = asyncio.ensure_future(self.load(phase, stop, turns))
        info: dict = {}
        deadline = time.monotonic() + 20
        while len(turns) < 2 * CONCURRENCY and time.monotonic() < deadline and not load.done():
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # turns mid-stream at the action
        if action is not None:
            info["action_at_s"] = round(time.monotonic() - self._started, 3)
            info.update(await asyncio.to_thread(action) or {})
        settle_started = time.monotonic()
        deadline = settle_started + 90
        while time.monotonic() < deadline and not load.done():
            if await asyncio.to_thread(settle, turns, info):
                break
            await asyncio.sleep(0.2)
        else:
            info["settle_timed_out"] = not load.done()
        stop.set()
        try:
            await asyncio.wait_for(load, 40)  # each turn has its own 30 s client timeout
        except TimeoutError:
            info["load_hung"] = True
        self.turns += turns
        return {"turns": turns, **info}

    # -- phases ---------------------------------------------------------------

    async def phases(self) -> None:
        result = self.result
        result["topology_before"] = self.topology()

        # 1. Spread: enough turns that both callers serve some.
        def spread_done(turns, info):
            return len(turns) >= 30

        result["phases"]["spread"] = await self.run_phase("spread", None, spread_done)
        result["phases"]["spread"]["topology"] = self.topology()

        # 2. The worker with a caller and without the tracker goes away.
        tracker_node = self.topology()["tracker"]
        victim = next(name for name in ("worker-1", "worker-2") if name != tracker_node)

        def lose_caller():
            started = time.monotonic()
            self.lose_node(victim)
            return {"removed": victim, "remove_s": round(time.monotonic() - started, 2)}

        def caller_settled(turns, info):
            done_after = [t for t in turns if t["started"] > info["action_at_s"] + info.get("remove_s", 0) + 1.0]
            return len(done_after) >= 20

        phase = await self.run_phase("caller_lost", lose_caller, caller_settled)
        phase["topology_after"] = self.topology()
        result["phases"]["caller_lost"] = phase
        # An autoscaler's replacement: the lost caller comes back there.
        started = time.monotonic()
        self.add_worker("worker-3")
        phase["replacement_caller_s"] = self.wait_for(self.two_live_callers, 90, "replacement caller")
        phase["replacement_total_s"] = round(time.monotonic() - started, 2)
        phase["topology_replaced"] = self.topology()

        # 3. The tracker's worker goes away (with the caller on it).
        tracker_node = self.topology()["tracker"]

        def lose_tracker():
            started = time.monotonic()
            self.lose_node(tracker_node)
            return {"removed": tracker_node, "remove_s": round(time.monotonic() - started, 2), "removed_at": time.monotonic()}

        def tracker_settled(turns, info):
            if "tracker_back_s" not in info:
                if self.topology()["tracker"] in self.workers and self.tracker_answers():
                    info["tracker_back_s"] = round(time.monotonic() - info["removed_at"], 2)
                    info["tracker_back_at"] = round(time.monotonic() - self._started, 3)
                return False
            after = [t for t in turns if t["started"] > info["tracker_back_at"]]
            return len(after) >= 12

        phase3 = await self.run_phase("tracker_lost", lose_tracker, tracker_settled)
        phase3.pop("removed_at", None)
        phase3["topology_after"] = self.topology()
        result["phases"]["tracker_lost"] = phase3
        # Planned without the tracker: turns that began after the loss and
        # ended before it answered again.
        back = phase3.get("tracker_back_at")
        lost_at = phase3.get("action_at_s")
        if back is not None:
            phase3["turns_while_tracker_away"] = sum(
                1 for t in phase3["turns"] if t["started"] >= lost_at + phase3["remove_s"] and t["ended"] <= back)
        # A replacement for the lost caller: its writer writes the lost
        # replica's unflushed records (write-ahead log) as it starts.
        started = time.monotonic()
        self.add_worker("worker-4")
        phase3["replacement_caller_s"] = self.wait_for(self.two_live_callers, 90, "second replacement caller")
        phase3["topology_replaced"] = self.topology()

    def records(self) -> None:
        """Every turn's rows in the turn log (bounded wait for the last flushes)."""
        from nemo_turnlog import read_turn_log

        rids = {t["rid"] for t in self.turns}
        rows: list[dict] = []
        started = time.monotonic()
        deadline = started + 30
        while time.monotonic() < deadline:
            rows = [r for r in read_turn_log(self.turn_log, columns=["request_id", "status", "request_notes"]).to_pylist()
                    if r["request_id"] in rids]
            if {r["request_id"] for r in rows} == rids:
                break
            time.sleep(0.3)
        self.result["timings_s"]["records_wait"] = round(time.monotonic() - started, 2)
        by_rid: dict[str, list[dict]] = {}
        for row in rows:
            by_rid.setdefault(row["request_id"], []).append(row)
        for turn in self.turns:
            found = by_rid.get(turn["rid"], [])
            turn["records"] = len(found)
            turn["record_status"] = found[0]["status"] if found else None
            turn["carried_over"] = any("carried over" in n for r in found for n in (r["request_notes"] or []))
        # Which caller process wrote each file (its name starts with the replica id).
        writers: dict[str, int] = {}
        for path in self.turn_log.rglob("caller-*.parquet"):
            pid = path.name.split("-")[1]
            writers[pid] = writers.get(pid, 0) + 1
        self.result["files_by_caller_pid"] = writers
        # Files named after a lost caller (its write-ahead log's segments are
        # named by their writer) but written after it died: another caller
        # on this host replayed them.
        self.result["replayed_files_of_lost_callers"] = {
            pid: sum(1 for path in self.turn_log.rglob(f"caller-{pid}-*.parquet") if path.stat().st_mtime > lost_at)
            for pid, lost_at in self.lost_callers.items()
        }

    # -- tear-down --------------------------------------------------------------

    def shutdown(self) -> None:
        started = time.monotonic()
        try:
            from ray import serve

            serve.shutdown()
        except Exception:
            self.result.setdefault("teardown_errors", []).append(traceback.format_exc()[-400:])
        try:
            import ray

            ray.shutdown()
        except Exception:
            self.result.setdefault("teardown_errors", []).append(traceback.format_exc()[-400:])
        if self.cluster is not None:
            try:
                self.cluster.shutdown()
            except Exception:
                self.result.setdefault("teardown_errors", []).append(traceback.format_exc()[-400:])
        if self.sim is not None:
            self.sim.stop()
        self.result["timings_s"]["shutdown"] = round(time.monotonic() - started, 2)
        self.result["leftovers"] = end_leftovers(self.tmp)


def ours(tmp: Path, with_children: bool = True) -> list[int]:
    """Processes of this cluster still running: the ones whose command line
    or environment names its temp folder (Ray's processes all carry it; its
    workers run in sessions of their own), and, in the scenario's own
    process, its children. The test that ran the scenario passes
    ``with_children=False``: its children include the test session's own
    Ray, which is not this cluster's to end."""
    import psutil

    marker = str(tmp)
    me = psutil.Process()
    found = {child.pid for child in me.children(recursive=True)} if with_children else set()
    ancestors = {me.pid, *(parent.pid for parent in me.parents())}
    for process in psutil.process_iter(["pid", "cmdline"]):
        if process.info["pid"] in ancestors:
            continue
        try:
            if any(marker in part for part in process.info["cmdline"] or ()):
                found.add(process.info["pid"])
            elif process.environ().get("RAY_TMPDIR") == marker:
                found.add(process.info["pid"])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return sorted(found)


def end_leftovers(tmp: Path, wait_s: float = 10.0, with_children: bool = True) -> list[dict]:
    """Wait (bounded) for this cluster's processes to end; end any left by
    PID; what was left, and whether it had to be ended."""
    import psutil

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and ours(tmp, with_children):
        time.sleep(0.2)
    left = []
    for pid in ours(tmp, with_children):
        try:
            process = psutil.Process(pid)
            left.append({"pid": pid, "cmd": " ".join(process.cmdline())[:160]})
            process.kill()
        except psutil.NoSuchProcess:
            continue
    return left


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True, help="the router's HTTP port; Serve uses port..port+299")
    parser.add_argument("--ray-port", type=int, default=None, help="Ray's ports: this..this+599 (default: port+400)")
    parser.add_argument("--tmp", default=None, help="a folder of our own (short: Ray's socket paths live in it)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--ray-default-health-checks", action="store_true", help="Ray's own node-failure detection (slower)")
    args = parser.parse_args(argv)
    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="nmn-", dir="/tmp"))
    tmp.mkdir(parents=True, exist_ok=True)
    health_checks = None if args.ray_default_health_checks else FAST_HEALTH_CHECKS
    scenario = Scenario(args.port, args.ray_port or args.port + 400, tmp, health_checks)
    scenario.result.update(port=args.port, ray_port=scenario.ray_port, tmp=str(tmp), health_checks=health_checks or "ray-defaults")
    started = time.monotonic()
    out = Path(args.out)

    def watchdog():  # the whole run is bounded, even if Ray itself hangs
        if not done.wait(TOTAL_DEADLINE_S):
            scenario.result["error"] = f"scenario exceeded {TOTAL_DEADLINE_S} s"
            scenario.result["leftovers"] = end_leftovers(tmp, wait_s=0)
            out.write_text(json.dumps(scenario.result, default=str))
            os._exit(3)

    done = threading.Event()
    threading.Thread(target=watchdog, daemon=True).start()
    code = 0
    try:
        scenario.environment()
        scenario.start()
        asyncio.run(scenario.phases())
        scenario.records()
    except BaseException:
        scenario.result["error"] = traceback.format_exc()[-3000:]
        code = 1
    finally:
        scenario.result["turns"] = scenario.turns
        for phase in scenario.result["phases"].values():
            phase.pop("turns", None)
        scenario.shutdown()
        scenario.result["timings_s"]["total"] = round(time.monotonic() - started, 2)
        done.set()
        out.write_text(json.dumps(scenario.result, default=str))
    return code


if __name__ == "__main__":
    sys.exit(main())
