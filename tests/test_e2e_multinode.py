"""The router on a Ray cluster of a head and worker nodes on this machine
(``ray.cluster_utils.Cluster``), losing nodes under load: turns routed,
streamed and logged across nodes; a caller's node lost (turns go on on the
other caller; those cut are carried over or end with a clean SSE error;
every turn has its record); the tracker's node lost (the tracker comes back
on another node, the ingress plans locally meanwhile, no turn fails).

The cluster needs a Ray of its own, so the scenario runs in a process of
its own (tests/multinode_cluster.py) with its own ports and temp folder,
and reports JSON; these tests read it. ~1.5 min on 2 cores: the longest
e2e file, kept in the suite (see the README's Tests section).

Ports: ``NEMO_MULTINODE_PORT`` (default: the test router's + 300) and the
299 above it for Serve, and the 600 from it + 400 for Ray's processes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import ROUTER_PORT

pytestmark = pytest.mark.ray

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "multinode_cluster.py"
PORT = int(os.environ.get("NEMO_MULTINODE_PORT", ROUTER_PORT + 300))
sys.path.insert(0, str(HERE))
import multinode_cluster as scenario  # noqa: E402  (its constants; it starts nothing on import)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = Path(tempfile.mkdtemp(prefix="nmn-", dir="/tmp"))  # short: Ray's socket paths live in it
    out = tmp_path_factory.mktemp("multinode") / "result.json"
    log_path = out.with_name("scenario.log")
    # Nothing of the test session's Ray or Serve settings: the scenario sets its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_SERVE_", "RAY_ADDRESS", "RAY_TMPDIR"))}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--port", str(PORT), "--tmp", str(tmp), "--out", str(out)],
            cwd=HERE.parent, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        process.wait(timeout=scenario.TOTAL_DEADLINE_S + 30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    # By PID, only this cluster's processes: not this session's own Ray (our children too).
    left_after = scenario.end_leftovers(tmp, wait_s=5, with_children=False)
    if not out.exists():
        pytest.fail(f"the scenario wrote no result (exit {process.returncode}); its log: {log_path}")
    result = json.loads(out.read_text())
    result["left_after_exit"] = left_after
    result["log"] = str(log_path)
    yield result
    shutil.rmtree(tmp, ignore_errors=True)


def turns(result, phase):
    return [t for t in result["turns"] if t["phase"] == phase]


def assert_clean(result, phase) -> list[dict]:
    """Every turn of the phase ended: whole, or a gap-free prefix and the
    router's error event (never a cut body, a client timeout or a hang);
    each has exactly one turn-log record."""
    assert "error" not in result, result["error"]
    info = result["phases"][phase]
    assert not info.get("load_hung") and not info.get("settle_timed_out"), info
    ts = turns(result, phase)
    assert ts
    for t in ts:
        assert not t.get("unexpected"), t
        assert t["whole"] or (t["error"] and t["clean_prefix"]), t
        assert t["duration_s"] < 15, t
        assert t["records"] == 1, t
        assert (t["record_status"] == "ok") == t["whole"], t
    return ts


def test_turns_are_routed_streamed_and_logged_across_nodes(run):
    before = run["topology_before"]
    assert before["ingress"] == ["head", "head"]
    assert before["callers"] == ["worker-1", "worker-2"]  # one per worker (nemo_caller: 1 each)
    assert before["tracker"] in ("worker-1", "worker-2")
    ts = assert_clean(run, "spread")
    assert all(t["whole"] for t in ts)
    # Both callers, on both workers, served turns and wrote their records.
    pids = before["caller_pids"]
    assert set(pids) <= set(run["files_by_caller_pid"]), (pids, run["files_by_caller_pid"])


def test_a_caller_node_lost_under_load(run):
    phase = run["phases"]["caller_lost"]
    assert phase["removed"] != run["topology_before"]["tracker"]
    ts = assert_clean(run, "caller_lost")
    lost_at = phase["action_at_s"]
    cut = [t for t in ts if t["started"] < lost_at < t["ended"]]
    after = [t for t in ts if t["started"] > lost_at + 1]
    assert len(after) >= 15 and all(t["whole"] for t in after)  # the other caller carries on
    # Those cut mid-stream were carried over to the other caller, or ended cleanly.
    assert any(t["carried_over"] for t in cut) or any(t["error"] for t in cut) or all(t["whole"] for t in cut)
    assert phase["topology_after"]["tracker"] == run["topology_before"]["tracker"]
    # The replacement worker gets the lost caller back.
    assert phase["topology_replaced"]["callers"] == sorted(
        [n for n in ("worker-1", "worker-2") if n != phase["removed"]] + ["worker-3"])


def test_the_tracker_node_lost_under_load(run):
    phase = run["phases"]["tracker_lost"]
    assert phase["removed"] == run["phases"]["caller_lost"]["topology_replaced"]["tracker"]
    ts = assert_clean(run, "tracker_lost")
    assert all(t["whole"] for t in ts)  # no turn fails for it (those on its caller carried over whole)
    # It came back on the only other node with nemo_state.
    assert phase["topology_after"]["tracker"] == "worker-3"
    assert "tracker_back_s" in phase
    # Meanwhile the ingress planned locally: turns began after the loss and
    # ended before the tracker answered again...
    assert phase["turns_while_tracker_away"] >= 3
    # ...without each waiting for the tracker's timeout (1 s).
    lost, back = phase["action_at_s"] + phase["remove_s"], phase["tracker_back_at"]
    before = [t["duration_s"] for t in ts if t["ended"] < lost]
    away = [t["duration_s"] for t in ts if lost + 1 < t["started"] and t["ended"] < back]
    assert away and statistics.median(away) < statistics.median(before) + 0.4, (before, away)
    assert sorted(phase["topology_replaced"]["callers"]) == ["worker-3", "worker-4"]


def test_a_lost_caller_s_unflushed_records_are_written_by_another(run):
    """A lost caller's records not yet flushed (every 2 s here) when its
    node went away are in its write-ahead log, in the folder the nodes
    share; the replacement caller on this host writes them (so every turn
    above has its record). On a real cluster the node's disk goes too:
    README, What a node loss costs."""
    replayed, unflushed = run["replayed_files_of_lost_callers"], run["unflushed_records_of_lost_callers"]
    assert len(replayed) == 2 and any(unflushed.values()), unflushed
    for pid, records in unflushed.items():
        assert replayed[pid] >= (1 if records else 0), (pid, records, replayed)


def test_nothing_is_left_running(run):
    assert run["leftovers"] == [] and run["left_after_exit"] == []
    for port in (run["port"], run["ray_port"]):
        with socket.socket() as sock:
            sock.settimeout(1)
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still listening"
