"""``nemo-router report``: latency, errors, fallbacks, tokens and cost per
model group or endpoint, from the turn log (a folder or ``s3://bucket/prefix``).

    nemo-router report ./turnlog-data                    # last hour, per model group
    nemo-router report s3://logs/turns --since 24h --by endpoint --format json
    nemo-router report ./turnlog-data --conversation call-42   # one call, turn by turn
    nemo-router report ./turnlog-data --by conversation        # per call (``conversation_report``)
    nemo-router report ./turnlog-data --since 30d --by key --period month   # spend per key and month

Per group: ``turns``; ``errors`` and ``error_rate`` (turns whose ``status``
is ``error``; cancelled turns are not errors); TTFT and total latency p50
and p99 in milliseconds; ``fallbacks`` (sum of ``fallback_count``); prompt
and completion tokens; ``cost_usd`` when the log has that column (else
None). ``--by key`` groups by the client key's name and the UTC period
(``--period day`` or ``month``, the default) the turn started in: what each
key spent per period, as its budget counts it. Percentiles are nearest-rank over the group's non-null values: the
smallest value with at least p% of the values at or below it, so every
reported number is an observed one (p99 of 10 turns is the slowest).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from nemo_turnlog.athena import athena_ddl
from nemo_turnlog import conversation_report
from nemo_turnlog.reader import read_turn_log
from nemo_turnlog.s3_client import TurnLogS3Error

__all__ = [
    "GROUP_COLUMNS",
    "add_arguments",
    "build_report",
    "format_table",
    "main",
    "nearest_rank",
    "parse_since",
    "run",
]

DESCRIPTION = "p50/p99 TTFT and total latency, error rate, fallbacks, tokens and cost from the turn log"
# --by value -> the column grouped on.
GROUP_COLUMNS = {"model": "model_group", "endpoint": "endpoint", "key": "api_key_id"}
PERIOD_CHARS = {"day": 10, "month": 7}  # of ``dt`` (YYYY-MM-DD): the period a turn started in
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_since(text: str) -> float | None:
    """``90s``, ``15m``, ``1h``, ``7d`` -> seconds; ``all`` -> None (no limit)."""
    if text == "all":
        return None
    match = _DURATION.fullmatch(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive duration like 90s, 15m, 1h, 7d or 'all', got {text!r}")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def nearest_rank(sorted_values: Sequence[float], percent: int) -> float | None:
    """The nearest-rank ``percent``-th percentile of ascending values."""
    if not sorted_values:
        return None
    return sorted_values[max(math.ceil(percent * len(sorted_values) / 100), 1) - 1]


def build_report(table: pa.Table, *, since_s: float | None, by: str, now: datetime, period: str = "month") -> list[dict[str, Any]]:
    """One dict per group, sorted by group (a group of None, e.g. turns no
    endpoint served, last). Each dict's first key is the grouped column
    (``model_group``, ``endpoint`` or ``api_key_id``; by key, then
    ``period``), then the numbers in the module docstring.

    Keeps turns with ``timestamp >= now - since_s`` (all when ``since_s`` is
    None); ``now`` is a tz-aware datetime (naive is taken as UTC).
    """
    column = GROUP_COLUMNS[by]
    if since_s is not None:
        cutoff = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
        cutoff = pa.scalar(cutoff - timedelta(seconds=since_s), type=table.schema.field("timestamp").type)
        table = table.filter(pc.greater_equal(table["timestamp"], cutoff))
    with_cost = "cost_usd" in table.column_names
    rows = []
    for key in _sorted_keys(table[column]):
        group = table.filter(_equal(table[column], key))
        if by != "key":
            rows.append({column: key, **_group_numbers(group, with_cost)})
            continue
        periods = pc.utf8_slice_codeunits(group["dt"], 0, PERIOD_CHARS[period])
        for when in _sorted_keys(periods):
            rows.append({column: key, "period": when, **_group_numbers(group.filter(_equal(periods, when)), with_cost)})
    return rows


def _sorted_keys(values: pa.ChunkedArray) -> list:
    keys = pc.unique(values).to_pylist()
    keys.sort(key=lambda key: (key is None, key or ""))
    return keys


def _equal(values: pa.ChunkedArray, key: Any) -> pa.ChunkedArray:
    return pc.is_null(values) if key is None else pc.equal(values, key)


def _group_numbers(rows: pa.Table, with_cost: bool) -> dict[str, Any]:
    errors = _sum(pc.equal(rows["status"], "error"))
    return {
        "turns": rows.num_rows,
        "errors": errors,
        "error_rate": errors / rows.num_rows,
        "ttft_p50_ms": _percentile_ms(rows["ttft_s"], 50),
        "ttft_p99_ms": _percentile_ms(rows["ttft_s"], 99),
        "total_p50_ms": _percentile_ms(rows["total_s"], 50),
        "total_p99_ms": _percentile_ms(rows["total_s"], 99),
        "fallbacks": _sum(rows["fallback_count"]),
        "prompt_tokens": _sum(rows["prompt_tokens"]),
        "completion_tokens": _sum(rows["completion_tokens"]),
        # None when no turn of the group was priced (not a misleading 0.0).
        "cost_usd": pc.sum(rows["cost_usd"], min_count=1).as_py() if with_cost else None,
    }


def _sum(values: pa.ChunkedArray) -> Any:
    if pa.types.is_boolean(values.type):
        values = pc.cast(values, pa.int64())
    return pc.sum(values, min_count=0).as_py()


def _percentile_ms(seconds: pa.ChunkedArray, percent: int) -> float | None:
    present = pc.drop_null(seconds)
    value = nearest_rank(pc.take(present, pc.sort_indices(present)).to_pylist(), percent)
    return None if value is None else round(value * 1000, 3)


_TABLE_COLUMNS = [  # (row key, header, format)
    ("turns", "turns", "{:d}"),
    ("error_rate", "errors", "{:.1%}"),
    ("ttft_p50_ms", "ttft p50 ms", "{:.1f}"),
    ("ttft_p99_ms", "ttft p99 ms", "{:.1f}"),
    ("total_p50_ms", "total p50 ms", "{:.1f}"),
    ("total_p99_ms", "total p99 ms", "{:.1f}"),
    ("fallbacks", "fallbacks", "{:d}"),
    ("prompt_tokens", "prompt tok", "{:d}"),
    ("completion_tokens", "completion tok", "{:d}"),
    ("cost_usd", "cost usd", "{:.4f}"),
]


def format_table(rows: list[dict[str, Any]]) -> str:
    """``build_report``'s rows as an aligned text table (``-`` for None); the
    cost column only when some row has a cost."""
    if not rows:
        return "no turns in the selected window"
    groups = list(rows[0])[: list(rows[0]).index("turns")]
    columns = [c for c in _TABLE_COLUMNS if c[0] != "cost_usd" or any(r["cost_usd"] is not None for r in rows)]
    header = groups + [title for _, title, _ in columns]
    body = [[_cell(row[g], "{}") for g in groups] + [_cell(row[key], fmt) for key, _, fmt in columns] for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        left = [cell.ljust(width) for cell, width in zip(cells[: len(groups)], widths, strict=False)]
        right = [cell.rjust(width) for cell, width in zip(cells[len(groups):], widths[len(groups):], strict=True)]
        return "  ".join(left + right)

    return "\n".join([line(header), *(line(cells) for cells in body)])


def _cell(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The report's arguments, for a ``report`` subparser of ``nemo-router``."""
    parser.add_argument("source", metavar="PATH_OR_S3_URL", help="turn-log folder or s3://bucket/prefix")
    parser.add_argument(
        "--since", type=parse_since, default=parse_since("1h"), help="window: 90s, 15m, 1h (default), 7d, or all"
    )
    parser.add_argument(
        "--by",
        choices=sorted([*GROUP_COLUMNS, "conversation"]),
        default="model",
        help="group by model group (default), endpoint, client key and period, or conversation (per call: p50/p99 TTFT, the slowest turn)",
    )
    parser.add_argument(
        "--period", choices=sorted(PERIOD_CHARS), default="month", help="with --by key: spend per day or month (default)"
    )
    parser.add_argument("--conversation", default=None, metavar="ID", help="print one conversation turn by turn")
    parser.add_argument("--format", choices=["table", "json"], default="table", dest="output_format")
    parser.add_argument("--endpoint-url", default=None, help="S3-compatible endpoint (MinIO, moto); default: AWS")
    parser.add_argument("--region", default=None, help="S3 region; default: boto3's configuration")
    parser.add_argument("--athena-ddl", action="store_true",
                        help="print the CREATE EXTERNAL TABLE for Athena over this s3:// turn log, and stop")


def run(args: argparse.Namespace, *, now: datetime | None = None) -> int:
    """Print the report for parsed ``args``; 0 on success, 1 when the log
    cannot be read (the reason goes to stderr)."""
    now = now or datetime.now(timezone.utc)
    is_s3 = args.source.startswith("s3://")
    if getattr(args, "athena_ddl", False):
        if not is_s3:
            print("nemo-router report: --athena-ddl needs the turn log's s3://bucket/prefix", file=sys.stderr)
            return 1
        print(athena_ddl(args.source, first_day=f"{now:%Y-%m}-01"))
        return 0
    if not is_s3 and not Path(args.source).is_dir():
        print(f"nemo-router report: no turn-log folder at {args.source}", file=sys.stderr)
        return 1
    since = None if args.since is None else now - timedelta(seconds=args.since)
    try:
        table = read_turn_log(args.source, since=since, region=args.region, endpoint_url=args.endpoint_url)
    except (TurnLogS3Error, ValueError, OSError, pa.ArrowException) as exc:
        print(f"nemo-router report: cannot read {args.source}: {exc}", file=sys.stderr)
        return 1
    as_json = args.output_format == "json"
    if getattr(args, "conversation", None) is not None:
        rows = conversation_report.conversation_turns(table, args.conversation)
        print(json.dumps(rows, indent=2) if as_json else conversation_report.format_conversation(args.conversation, rows))
    elif args.by == "conversation":
        rows = conversation_report.conversation_summaries(table)
        print(json.dumps(rows, indent=2) if as_json else conversation_report.format_summaries(rows))
    else:
        rows = build_report(table, since_s=args.since, by=args.by, now=now, period=args.period)
        print(json.dumps(rows, indent=2) if as_json else format_table(rows))
    return 0


def main(argv: Sequence[str] | None = None, *, now: datetime | None = None) -> int:
    """``nemo-router report ARGS``: ``argv`` is what follows ``report``."""
    parser = argparse.ArgumentParser(prog="nemo-router report", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv), now=now)


if __name__ == "__main__":
    sys.exit(main())
