"""The callback interface: CallbackSink, FanoutSink, and both behind a real TurnLogWriter."""

from __future__ import annotations

import logging
from datetime import timezone

import pytest

from nemo_turnlog import LocalParquetSink, TurnLogWriter, read_turn_log, records_to_table
from nemo_turnlog.callbacks import CallbackSink, FanoutSink, TurnCallback, records_from_table
from nemo_turnlog.export_testing import sample_turn
from nemo_turnlog.record import AttemptRecord


class Collect:
    def __init__(self):
        self.records = []
        self.closed = False

    def on_turns(self, records):
        self.records.extend(records)

    def close(self):
        self.closed = True


class Broken:
    def on_turns(self, records):
        raise RuntimeError("secret-in-message https://hooks.example/xyz")


class FlakyPrimary:
    """A primary sink that fails its first write."""

    def __init__(self):
        self.tables = []
        self.calls = 0

    def write(self, batch):
        self.calls += 1
        if self.calls == 1:
            raise OSError("disk full")
        self.tables.append(batch)

    def close(self):
        pass


def test_records_survive_the_round_trip_through_arrow():
    failed = sample_turn(endpoint=None, status="error", ttft_s=None, attempts=[AttemptRecord("a", "timeout", 1.0)])
    records = [sample_turn(), failed]
    back = records_from_table(records_to_table(records))
    assert back == records
    assert back[0].timestamp.tzinfo is not None and back[0].timestamp.utcoffset() == timezone.utc.utcoffset(None)


def test_callback_sink_adapts_any_callback():
    collect = Collect()
    assert isinstance(collect, TurnCallback)
    sink = CallbackSink(collect)
    sink.write(records_to_table([sample_turn(request_id="r1")]))
    sink.write([sample_turn(request_id="r2")])
    sink.close()
    assert [r.request_id for r in collect.records] == ["r1", "r2"] and collect.closed


def test_a_failing_sink_never_stops_the_others(caplog):
    caplog.set_level(logging.WARNING)
    first, last = Collect(), Collect()
    fanout = FanoutSink([first, Broken(), last])
    fanout.write(records_to_table([sample_turn()]))
    fanout.write([sample_turn()])
    assert len(first.records) == len(last.records) == 2
    assert fanout.stats() == {"errors": [0, 2, 0]}
    assert "RuntimeError" in caplog.text and "secret-in-message" not in caplog.text


def test_primary_errors_propagate_and_extras_see_each_batch_once():
    primary, extra = FlakyPrimary(), Collect()
    fanout = FanoutSink([extra], primary=primary)
    batch = records_to_table([sample_turn(request_id="r1")])
    with pytest.raises(OSError):
        fanout.write(batch)
    assert extra.records == []  # not stored yet, so not exported yet
    fanout.write(batch)
    assert [r.request_id for r in extra.records] == ["r1"] and len(primary.tables) == 1


def test_behind_a_writer_the_log_and_the_callback_get_every_turn(tmp_path):
    extra = Collect()
    writer = TurnLogWriter(FanoutSink([extra], primary=LocalParquetSink(tmp_path, "replica-a")), flush_interval_s=60)
    ids = {f"r{i}" for i in range(25)}
    for request_id in sorted(ids):
        writer.emit(sample_turn(request_id=request_id))
    writer.close()
    assert {r.request_id for r in extra.records} == ids and extra.closed
    assert set(read_turn_log(tmp_path).column("request_id").to_pylist()) == ids
