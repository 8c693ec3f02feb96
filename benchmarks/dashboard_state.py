"""The dashboard's state at scale, without Ray: 200 endpoints, 10k turns a
minute from four caller replicas, fed through the real recorder, aggregator
and ``DashboardState`` on a simulated clock (one delta per replica per
second, as ``metrics.report_interval_s`` sends them).

After the window has filled (default: the 300 s window of 10 s slots), it
measures, each a median over repeated polls:

- a full answer (a browser that just opened the page): build time and
  JSON size (times are CPU time of this process, so that other processes on
  a shared machine do not count);
- a one-second delta (a browser polling every second): build time and JSON
  size, with a routing snapshot of 200 endpoints whose scores drift;
- what the turn path pays: ``MetricsRecorder.observe`` per turn with the
  recent-turns rows kept (the default) and without (``recent_max=0``, as
  before the dashboard), and the hub's merge per delta with and without the
  dashboard's bookkeeping.

Prints a table and saves JSON and Markdown under benchmarks/results/.

    python benchmarks/dashboard_state.py [--endpoints 200] [--turns-per-min 10000] [--polls 30]
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import random
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

from nemo_turnlog.dashboard import DashboardState, Since
from nemo_turnlog.metrics import MetricsAggregator, MetricsRecorder
from nemo_turnlog.record import AttemptRecord, TurnRecord

RESULTS = Path(__file__).resolve().parent / "results"
REPLICAS = 4
GROUP_SIZE = 10


class SimClock:
    def __init__(self) -> None:
        self.now_s = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now_s


def make_turn(rng: random.Random, endpoints: list[str], now_s: float, n: int) -> TurnRecord:
    index = rng.randrange(len(endpoints))
    endpoint = endpoints[index]
    failed = rng.random() < 0.02
    attempts = [AttemptRecord(endpoint, "ok", 0.5, 200)]
    if failed:  # a fallback: the previous endpoint of the group failed first
        other = endpoints[index - 1]
        attempts.insert(0, AttemptRecord(other, "upstream_5xx", 0.05, 503))
    return TurnRecord(
        request_id=f"req-{n}", timestamp=datetime.fromtimestamp(now_s, timezone.utc), model_group=f"group-{index // GROUP_SIZE}",
        endpoint=endpoint, provider="openai", model="m", streamed=True, status="ok", http_status=200, error_type=None,
        ttft_s=rng.lognormvariate(-1.5, 0.4), total_s=rng.lognormvariate(-0.5, 0.3), prompt_tokens=400, completion_tokens=40,
        total_tokens=440, attempts=attempts, fallback_count=len(attempts) - 1, cost_usd=0.0002, conversation_id=f"call-{n % 997}",
    )  # fmt: skip


def routing_snapshot(rng: random.Random, endpoints: list[str]) -> dict:
    return {
        name: {
            "group": f"group-{i // GROUP_SIZE}", "strategy": "latency-based", "score": rng.uniform(0.1, 0.4),
            "in_flight": rng.randrange(4), "breaker": "closed", "ttft_s": rng.uniform(0.1, 0.3), "ttft_p50_s": 0.2,
            "ttft_p99_s": 0.5, "turns": 1000 + i, "failures": 3,
        }
        for i, name in enumerate(endpoints)
    }  # fmt: skip


class Feed:
    """Simulated seconds of traffic into the hub's two objects."""

    def __init__(self, endpoints: list[str], turns_per_min: int, window_s: float, slot_s: float):
        self.clock = SimClock()
        self.rng = random.Random(7)
        self.endpoints = endpoints
        self.per_second = turns_per_min / 60.0
        self.metrics = MetricsAggregator(window_s, slot_s, clock=self.clock)
        self.dashboard = DashboardState(self.metrics)
        self.recorders = [MetricsRecorder(slot_s, clock=self.clock) for _ in range(REPLICAS)]
        self.turns = 0
        self._carry = 0.0

    def second(self) -> None:
        self._carry += self.per_second
        count, self._carry = int(self._carry), self._carry - int(self._carry)
        for i in range(count):
            self.clock.now_s += 1.0 / max(count, 1) * 0.999
            self.recorders[i % REPLICAS].observe(make_turn(self.rng, self.endpoints, self.clock.now_s, self.turns))
            self.turns += 1
        for recorder in self.recorders:
            delta = recorder.take()
            if delta is not None:
                self.metrics.merge(delta)
                self.dashboard.merged(delta)
        self.clock.now_s = float(int(self.clock.now_s) + 1)


def payload(answer: dict) -> tuple[int, int]:
    body = json.dumps(answer, separators=(",", ":")).encode()
    return len(body), len(gzip.compress(body))


def timed(fn) -> tuple[float, object]:
    """CPU seconds (this process's): on a shared machine, wall time also
    counts the seconds other processes held the cores."""
    start = time.process_time()
    result = fn()
    return time.process_time() - start, result


def poll_costs(feed: Feed, polls: int) -> dict:
    rng = random.Random(11)
    full_times, full_sizes, delta_times, delta_sizes, delta_turns = [], [], [], [], []
    answer = feed.dashboard.state(Since(), routing_snapshot(rng, feed.endpoints))
    cold_s, _ = timed(lambda: feed.dashboard.state(Since(), routing_snapshot(rng, feed.endpoints)))
    for _ in range(polls):
        feed.second()
        routing = routing_snapshot(rng, feed.endpoints)
        since, turns_since = Since.parse(answer["cursor"]), answer["turns_cursor"]
        seconds, answer = timed(lambda: feed.dashboard.state(since, routing, (), turns_since))
        delta_times.append(seconds)
        delta_sizes.append(payload(answer))
        delta_turns.append(len(answer["turns"]))
        seconds, full = timed(lambda: feed.dashboard.state(Since(), routing))
        full_times.append(seconds)
        full_sizes.append(payload(full))
    return {
        "first_full_build_ms": round(cold_s * 1000, 2),
        "full_build_ms_median": round(statistics.median(full_times) * 1000, 2),
        "full_bytes_median": int(statistics.median(s[0] for s in full_sizes)),
        "full_gzip_bytes_median": int(statistics.median(s[1] for s in full_sizes)),
        "delta_build_ms_median": round(statistics.median(delta_times) * 1000, 2),
        "delta_bytes_median": int(statistics.median(s[0] for s in delta_sizes)),
        "delta_gzip_bytes_median": int(statistics.median(s[1] for s in delta_sizes)),
        "delta_turn_rows_median": statistics.median(delta_turns),
        "series_points_full": sum(len(s["points"]) for s in full["series"]),
        "hub_sizes": feed.dashboard.sizes(),
    }


def turn_path_costs(endpoints: list[str], turns: int = 20000) -> dict:
    """Per turn on a caller replica, and per delta on the hub."""
    rng = random.Random(3)
    clock = SimClock()
    records = [make_turn(rng, endpoints, clock.now_s, n) for n in range(turns)]
    out = {}
    # Alternating A/B rounds (the machine is shared: interleaving spreads its
    # noise over both), 170 turns a delta (10k/min on one replica).
    samples: dict[str, list[float]] = {}
    for _ in range(6):
        for label, recent_max in (("with_rows", 1000), ("without_rows", 0)):
            recorder = MetricsRecorder(10.0, clock=clock, recent_max=recent_max)
            for start in range(0, turns, 170):
                batch = records[start : start + 170]
                seconds, _ = timed(lambda: [recorder.observe(record) for record in batch])
                samples.setdefault(f"observe_us_per_turn_{label}", []).append(seconds / len(batch))
                seconds, _ = timed(recorder.take)  # the background task, once a second
                samples.setdefault(f"take_us_per_turn_{label}", []).append(seconds / len(batch))
    for name, values in samples.items():
        out[name] = f"median {statistics.median(values) * 1e6:.2f}, min {min(values) * 1e6:.2f}"
    # The hub's merge per delta, with and without the dashboard's bookkeeping.
    deltas = []
    for start in range(0, 170 * 20, 170):
        recorder = MetricsRecorder(10.0, clock=clock)
        for record in records[start : start + 170]:
            recorder.observe(record)
        deltas.append(recorder.take())
    merges: dict[str, list[float]] = {}
    for _ in range(5):
        for label, with_dashboard in (("merge_ms_per_delta_with_dashboard", True), ("merge_ms_per_delta_without", False)):
            metrics = MetricsAggregator(300.0, 10.0, clock=clock)
            dashboard = DashboardState(metrics)
            for delta in deltas:
                start = time.process_time()
                metrics.merge(delta)
                if with_dashboard:
                    dashboard.merged(delta)
                merges.setdefault(label, []).append(time.process_time() - start)
    for name, values in merges.items():
        out[name] = f"median {statistics.median(values) * 1e3:.3f}, min {min(values) * 1e3:.3f}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, default=200)
    parser.add_argument("--turns-per-min", type=int, default=10_000)
    parser.add_argument("--window-s", type=float, default=300.0)
    parser.add_argument("--slot-s", type=float, default=10.0)
    parser.add_argument("--polls", type=int, default=30)
    args = parser.parse_args()

    endpoints = [f"ep-{i:03d}" for i in range(args.endpoints)]
    feed = Feed(endpoints, args.turns_per_min, args.window_s, args.slot_s)
    fill_s, _ = timed(lambda: [feed.second() for _ in range(int(args.window_s))])
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "endpoints": args.endpoints, "groups": (args.endpoints + GROUP_SIZE - 1) // GROUP_SIZE,
        "turns_per_min": args.turns_per_min, "window_s": args.window_s, "slot_s": args.slot_s, "replicas": REPLICAS,
        "turns_fed": feed.turns, "fill_s": round(fill_s, 2),
        **poll_costs(feed, args.polls),
        **turn_path_costs(endpoints),
    }  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dashboard_state.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Dashboard state at scale (benchmarks/dashboard_state.py)", "", "| measure | value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in result.items()]
    (RESULTS / "dashboard_state.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
