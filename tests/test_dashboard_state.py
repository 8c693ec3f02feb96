"""The dashboard's state, without Ray: the recent-turns ring (bounded,
nothing lost or duplicated across cursors), the series deltas (a reader
that applies every answer holds the full state), the routing preference,
and what a replica's recorder sends."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_turnlog.dashboard import POINT_FIELDS, ROUTING_FIELDS, DashboardState, Since, preferred_endpoints
from nemo_turnlog.export_testing import sample_turn
from nemo_turnlog.metrics import MetricsAggregator, MetricsRecorder
from nemo_turnlog.record import AttemptRecord
from nemo_turnlog.recent_turns import ROW_FIELDS, RecentTurns, TurnFilter, TurnRow


class FakeClock:
    def __init__(self, now_s: float = 1_000_000.0):
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def row(i: int, group: str = "g", endpoint: str = "e", status: str = "ok", conversation: str | None = None) -> TurnRow:
    return TurnRow.of(sample_turn(request_id=f"r{i}", model_group=group, endpoint=endpoint, status=status, conversation_id=conversation))


# -- the recent-turns ring ---------------------------------------------------

ring_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 40)),
        st.tuples(st.just("poll"), st.integers(1, 30)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(capacity=st.integers(1, 50), ops=ring_ops)
def test_ring_readers_get_every_row_once_or_are_told_what_they_missed(capacity, ops):
    ring = RecentTurns(capacity)
    appended, received, accounted_elsewhere, cursor = 0, [], 0, 0
    for op, n in ops:
        if op == "add":
            ring.extend(row(appended + i) for i in range(n))
            appended += n
        else:
            answer = ring.since(cursor, limit=n)
            seqs = [seq for seq, _ in answer.rows]
            assert seqs == sorted(seqs, reverse=True) and len(seqs) <= n  # newest first, bounded
            assert all(seq > cursor for seq in seqs)
            received += seqs
            accounted_elsewhere += answer.skipped + answer.missed
            cursor = answer.last_seq
        assert len(ring) <= capacity  # memory bounded whatever the rate
    final = ring.since(cursor, limit=capacity)
    received += [seq for seq, _ in final.rows]
    accounted_elsewhere += final.skipped + final.missed
    assert len(received) == len(set(received))  # nothing twice
    assert len(received) + accounted_elsewhere == appended  # nothing silently lost
    assert all(ring.get(seq).request_id == f"r{seq - 1}" for seq in range(ring.first_seq, ring.last_seq + 1))


@settings(max_examples=100, deadline=None)
@given(statuses=st.lists(st.sampled_from(["ok", "error", "cancelled"]), max_size=80), limit=st.integers(1, 100))
def test_ring_filter_sends_only_matching_rows_and_counts_the_rest(statuses, limit):
    ring = RecentTurns(100)
    ring.extend(row(i, status=status) for i, status in enumerate(statuses))
    answer = ring.since(0, TurnFilter(status="error"), limit)
    assert all(r.status == "error" for _, r in answer.rows)
    assert len(answer.rows) + answer.skipped == statuses.count("error")


def test_filter_fields_and_a_cursor_from_another_ring():
    ring = RecentTurns(10)
    ring.extend([row(0, "a", "x", conversation="call-17"), row(1, "b", "y", "error"), row(2, "a", "y")])
    assert [seq for seq, _ in ring.since(0, TurnFilter(model_group="a")).rows] == [3, 1]
    assert [seq for seq, _ in ring.since(0, TurnFilter(endpoint="y", model_group="a")).rows] == [3]
    assert [seq for seq, _ in ring.since(0, TurnFilter(conversation="call-1")).rows] == [1]
    assert [seq for seq, _ in ring.since(99).rows] == [3, 2, 1]  # ahead of this ring: read from the start
    assert ring.get(0) is None and ring.get(4) is None


def test_a_row_lists_and_details_without_key_or_messages():
    record = sample_turn(
        request_id="req-1", conversation_id="call-9", messages_json='[{"secret": 1}]', fallback_count=1,
        attempts=[AttemptRecord("a", "upstream_5xx", 0.1, 503), AttemptRecord("b", "ok", 0.5, 200)],
    )  # fmt: skip
    detail = TurnRow.of(record).detail(7)
    assert detail["seq"] == 7 and detail["conversation"] == "call-9" and detail["fallbacks"] == 1
    assert [a["outcome"] for a in detail["attempts"]] == ["upstream_5xx", "ok"]
    assert len(TurnRow.of(record).as_list(7)) == len(ROW_FIELDS)
    assert "secret" not in repr(detail) and "key-1" not in repr(detail)


# -- what a replica sends ----------------------------------------------------


def test_the_recorder_sends_rows_of_its_last_turns_and_counts_the_rest():
    recorder = MetricsRecorder(slot_s=10, recent_max=3)
    for i in range(5):
        recorder.observe(sample_turn(request_id=f"r{i}"))
    delta = pickle.loads(pickle.dumps(recorder.take()))  # as Ray ships it
    assert [r.request_id for r in delta.recent] == ["r2", "r3", "r4"] and delta.recent_dropped == 2
    assert delta.turns() == 5
    recorder.observe(sample_turn(request_id="r5"))
    delta = recorder.take()
    assert [r.request_id for r in delta.recent] == ["r5"] and delta.recent_dropped == 0


# -- series and deltas -------------------------------------------------------

KEYS = [("g1", "a"), ("g1", "b"), ("g2", "c"), ("g2", "")]

steps = st.lists(
    st.one_of(
        st.tuples(st.just("turns"), st.lists(st.tuples(st.sampled_from(KEYS), st.floats(0.01, 3.0)), min_size=1, max_size=6)),
        st.tuples(st.just("tick"), st.floats(0.1, 25.0)),
        st.tuples(st.just("route"), st.dictionaries(st.sampled_from(["a", "b", "c"]), st.floats(0.0, 2.0), max_size=3)),
        st.tuples(st.just("poll"), st.none()),
    ),
    max_size=40,
)


class Reader:
    """A browser's copy of the state, built only from answers."""

    def __init__(self):
        self.since = Since()
        self.series: dict[tuple, dict[int, list]] = {}
        self.routing: dict[str, list] = {}

    def apply(self, answer: dict) -> None:
        if answer["reset"]:
            self.series, self.routing = {}, {}
        for entry in answer["series"]:
            points = self.series.setdefault((entry["group"], entry["endpoint"]), {})
            points.update({p[0]: p for p in entry["points"]})
        for points in self.series.values():
            for slot in [s for s in points if s < answer["oldest_slot"]]:
                del points[slot]
        self.routing.update(answer["routing"])
        self.since = Since.parse(answer["cursor"])

    def view(self) -> tuple[dict, dict]:
        return {k: v for k, v in self.series.items() if v}, self.routing


def routing_snapshot(scores: dict[str, float]) -> dict:
    return {
        name: {"group": "g2" if name == "c" else "g1", "strategy": "latency-based", "score": score, "in_flight": 0, "breaker": "closed"}
        for name, score in scores.items()
    }


@settings(max_examples=150, deadline=None)
@given(ops=steps)
def test_a_reader_applying_every_delta_holds_the_full_state(ops):
    clock = FakeClock()
    metrics = MetricsAggregator(window_s=60, slot_s=10, clock=clock)
    state = DashboardState(metrics, recent_capacity=20, epoch="e1")
    reader = Reader()
    routing = routing_snapshot({"a": 0.1})
    for op, arg in ops:
        if op == "turns":
            recorder = MetricsRecorder(slot_s=10, clock=clock)
            for (group, endpoint), ttft_s in arg:
                recorder.observe(sample_turn(model_group=group, endpoint=endpoint or None, ttft_s=ttft_s))
            delta = recorder.take()
            metrics.merge(delta)
            state.merged(delta)
        elif op == "tick":
            clock.now_s += arg
        elif op == "route":
            routing = routing_snapshot(arg)
        else:
            reader.apply(state.state(reader.since, routing))
        sizes = state.sizes()
        assert sizes["slots"] <= 7 and sizes["points"] <= 7 * 6 and sizes["turns"] <= 20  # bounded by the window
    reader.apply(state.state(reader.since, routing))
    fresh = Reader()
    fresh.apply(state.state(Since(), routing))
    assert reader.view() == fresh.view()


def test_points_deltas_and_reset():
    clock = FakeClock(1_000_005.0)  # slot 100000
    metrics = MetricsAggregator(window_s=60, slot_s=10, clock=clock)
    state = DashboardState(metrics, epoch="e1")

    def turns(*ttfts, endpoint="a", status="ok"):
        recorder = MetricsRecorder(slot_s=10, clock=clock)
        attempts = [AttemptRecord("broken", "upstream_5xx", 0.1, 500), AttemptRecord(endpoint, status, 0.5, 200)]
        for ttft_s in ttfts:
            recorder.observe(sample_turn(
                model_group="g", endpoint=endpoint, ttft_s=ttft_s, status=status, fallback_count=1, attempts=attempts,
            ))  # fmt: skip
        delta = recorder.take()
        metrics.merge(delta)
        state.merged(delta)

    turns(0.1, 0.1, 0.1)
    turns(0.5, endpoint="b", status="error")
    full = state.state(Since())
    assert full["reset"] and full["point_fields"] == POINT_FIELDS
    series = {(s["group"], s["endpoint"]): s["points"] for s in full["series"]}
    assert set(series) == {("g", "a"), ("g", "b"), ("g", "broken"), ("g", None)}  # broken served none, failed four
    point = dict(zip(POINT_FIELDS, series[("g", None)][0]))
    assert point["slot"] == 100000 and point["turns"] == 4 and point["errors"] == 1 and point["fallbacks"] == 4
    assert point["failed_attempts"] == 5  # four on broken, b's own error
    broken = dict(zip(POINT_FIELDS, series[("g", "broken")][0]))
    assert broken["turns"] == 0 and broken["failed_attempts"] == 4
    assert point["ttft_p50_s"] == pytest.approx(0.1, rel=0.02)
    assert dict(zip(POINT_FIELDS, series[("g", "b")][0]))["ttft_p99_s"] == pytest.approx(0.5, rel=0.02)
    assert [t[ROW_FIELDS.index("endpoint")] for t in full["turns"]] == ["b", "a", "a", "a"]

    nothing = state.state(Since.parse(full["cursor"]), turns_since=full["turns_cursor"])
    assert not nothing["reset"] and nothing["series"] == [] and nothing["turns"] == []
    clock.now_s += 10  # the next slot
    turns(0.2)
    delta = state.state(Since.parse(full["cursor"]), turns_since=full["turns_cursor"])
    assert {(s["group"], s["endpoint"]) for s in delta["series"]} == {("g", "a"), ("g", "broken"), ("g", None)}
    assert all(len(s["points"]) == 1 and s["points"][0][0] == 100001 for s in delta["series"])
    assert len(delta["turns"]) == 1
    assert state.state(Since("another-hub", 3))["reset"]  # a cursor from before a restart
    with pytest.raises(ValueError):
        Since.parse("not a cursor")


def test_routing_rows_are_sent_when_they_change_and_the_preferred_endpoint():
    state = DashboardState(MetricsAggregator(window_s=60, slot_s=10), epoch="e1")
    routing = {
        "a": {"group": "g", "score": 0.3, "breaker": "closed", "in_flight": 1},
        "b": {"group": "g", "score": 0.1, "breaker": "open", "in_flight": 0},
        "c": {"group": "g", "score": 0.2, "breaker": "closed", "in_flight": 0},
        "d": {"group": "h", "score": None, "breaker": "closed", "in_flight": 0},
    }
    first = state.state(Since(), routing)
    assert set(first["routing"]) == {"a", "b", "c", "d"} and first["routing_fields"] == ROUTING_FIELDS
    assert first["preferred"] == {"g": "c"}  # b's breaker is open; h's strategy has no score
    routing["a"] = {**routing["a"], "score": 0.30001}  # drift below the shown precision
    routing["c"] = {**routing["c"], "in_flight": 2}
    second = state.state(Since.parse(first["cursor"]), routing)
    assert set(second["routing"]) == {"c"}
    assert state.state(Since.parse(first["cursor"]), None)["routing_available"] is False
    assert preferred_endpoints({}) == {}
