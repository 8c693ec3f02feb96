"""What the turn log's write-ahead log costs a turn: ``TurnLogWriter.emit``
per record, with and without the WAL, and the WAL's parts (encoding the
record as a JSON line, one ``os.write``). No Ray; runs in seconds.

    python benchmarks/turnlog_wal.py [--records 20000] [--folder /tmp]

Each figure is the median of ``--rounds`` rounds of ``--records`` emits
(microseconds per record). The writer's thread never flushes during a round
(the interval is an hour and the size trigger is out of reach), so this is
the turn's own cost. Writes go to the page cache: no fsync.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "logging")]

from nemo_turnlog import AttemptRecord, LocalParquetSink, TurnLogWriter, TurnRecord  # noqa: E402
from nemo_turnlog.record_json import encode_record  # noqa: E402
from nemo_turnlog.wal import WriteAheadLog  # noqa: E402


def record(i: int) -> TurnRecord:
    return TurnRecord(
        request_id=f"req-{i:08d}-0123456789abcdef", timestamp=datetime.now(timezone.utc), model_group="voice-fast",
        endpoint="sim-fast", provider="openai", model="sim-model", streamed=True, status="ok", http_status=200,
        error_type=None, ttft_s=0.123, total_s=0.456, prompt_tokens=30, completion_tokens=120, total_tokens=150,
        attempts=[AttemptRecord("sim-fast", "ok", 0.45, 200)], api_key_id="key-1", tags=["voice", "eu"],
        cost_usd=0.00012, gateway_overhead_s=0.0009,
    )


def per_record_us(action, records: list[TurnRecord]) -> float:
    start = time.perf_counter()
    for item in records:
        action(item)
    return (time.perf_counter() - start) / len(records) * 1e6


def measure(folder: Path, count: int, rounds: int) -> dict[str, float]:
    records = [record(i) for i in range(count)]
    big = count * rounds + 1
    results: dict[str, list[float]] = {"emit, no WAL": [], "emit, WAL": [], "encode_record": [], "os.write": []}
    line = encode_record(records[0])
    for index in range(rounds):
        plain = TurnLogWriter(LocalParquetSink(folder / f"plain{index}", "b"), flush_interval_s=3600,
                              flush_max_records=big, max_buffer_records=big)
        results["emit, no WAL"].append(per_record_us(plain.emit, records))
        wal = WriteAheadLog(folder / f"wal{index}", f"b{index}")
        logged = TurnLogWriter(LocalParquetSink(folder / f"logged{index}", "b"), flush_interval_s=3600,
                               flush_max_records=big, max_buffer_records=big, wal=wal)
        results["emit, WAL"].append(per_record_us(logged.emit, records))
        results["encode_record"].append(per_record_us(encode_record, records))
        fd = os.open(folder / f"raw{index}", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        results["os.write"].append(per_record_us(lambda _: os.write(fd, line), records))
        os.close(fd)
    return {name: statistics.median(values) for name, values in results.items()} | {"line_bytes": len(line)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--folder", default=None, help="where the WAL goes (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        figures = measure(Path(folder), args.records, args.rounds)
    print(f"{'what':<16} {'us/record':>10}")
    for name, value in figures.items():
        print(f"{name:<16} {value:>10.2f}" if name != "line_bytes" else f"{name:<16} {value:>10d}")


if __name__ == "__main__":
    main()
