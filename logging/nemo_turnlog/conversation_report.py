"""The turn log by conversation: one call turn by turn, and per-call numbers.

    nemo-router report ./turnlog-data --conversation call-42     # the call, turn by turn
    nemo-router report ./turnlog-data --by conversation          # per call: p50/p99 TTFT, the slowest turn

"When a call feels slow, you need the turn." ``conversation_turns`` lists
one call's turns in order (turn index, then start time): time (UTC), the
turn index, endpoint, TTFT and total in ms, prompt, completion and cached
prompt tokens, cost, fallbacks, status and what affinity did. ``conversation_summaries``
gives, per call, its turns, errors, TTFT p50 and p99 (nearest rank, as in
``report``), the slowest turn by TTFT (its index and TTFT) and the call's
cost. Turns that named no conversation are left out.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["conversation_summaries", "conversation_turns", "format_conversation", "format_summaries"]


def conversation_turns(table: pa.Table, conversation_id: str) -> list[dict[str, Any]]:
    """The call's turns, in order; empty when the log has none of it."""
    if "conversation_id" not in table.column_names:
        return []
    rows = table.filter(pc.equal(table["conversation_id"], conversation_id)).to_pylist()
    rows.sort(key=lambda r: (r["conversation_turn"] is None, r["conversation_turn"] or 0, r["timestamp"]))
    return [_turn(row) for row in rows]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _turn(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "time": row["timestamp"].isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "turn": row["conversation_turn"],
        "endpoint": row["endpoint"],
        "ttft_ms": _ms(row["ttft_s"]),
        "total_ms": _ms(row["total_s"]),
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "cached_tokens": row.get("cached_tokens"),
        "cost_usd": row.get("cost_usd"),
        "fallbacks": row["fallback_count"],
        "status": row["status"],
        "affinity": row.get("affinity"),
        "request_id": row["request_id"],
    }


def conversation_summaries(table: pa.Table) -> list[dict[str, Any]]:
    """Per call: numbers over its turns, slowest p99 TTFT first."""
    if "conversation_id" not in table.column_names:
        return []
    calls: dict[str, list[dict[str, Any]]] = {}
    for row in table.filter(pc.is_valid(table["conversation_id"])).to_pylist():
        calls.setdefault(row["conversation_id"], []).append(row)
    summaries = [_summary(call_id, rows) for call_id, rows in calls.items()]
    summaries.sort(key=lambda s: (-(s["ttft_p99_ms"] or 0.0), s["conversation_id"]))
    return summaries


def _summary(call_id: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    from nemo_turnlog.report import nearest_rank  # the report's percentile, shared

    timed = sorted((r for r in rows if r["ttft_s"] is not None), key=lambda r: r["ttft_s"])
    ttfts = [r["ttft_s"] for r in timed]
    slowest = timed[-1] if timed else None
    costs = [r.get("cost_usd") for r in rows if r.get("cost_usd") is not None]
    return {
        "conversation_id": call_id,
        "turns": len(rows),
        "errors": sum(1 for r in rows if r["status"] == "error"),
        "ttft_p50_ms": _ms(nearest_rank(ttfts, 50)),
        "ttft_p99_ms": _ms(nearest_rank(ttfts, 99)),
        "slowest_turn": slowest["conversation_turn"] if slowest else None,
        "slowest_ttft_ms": _ms(slowest["ttft_s"]) if slowest else None,
        "slowest_endpoint": slowest["endpoint"] if slowest else None,
        "cost_usd": sum(costs) if costs else None,
    }


_TURN_COLUMNS = [  # (key, header, format)
    ("time", "time (UTC)", "{}"),
    ("turn", "turn", "{:d}"),
    ("endpoint", "endpoint", "{}"),
    ("ttft_ms", "ttft ms", "{:.1f}"),
    ("total_ms", "total ms", "{:.1f}"),
    ("prompt_tokens", "prompt tok", "{:d}"),
    ("completion_tokens", "completion tok", "{:d}"),
    ("cached_tokens", "cached tok", "{:d}"),
    ("cost_usd", "cost usd", "{:.6f}"),
    ("fallbacks", "fallbacks", "{:d}"),
    ("status", "status", "{}"),
    ("affinity", "affinity", "{}"),
]

_SUMMARY_COLUMNS = [
    ("conversation_id", "conversation", "{}"),
    ("turns", "turns", "{:d}"),
    ("errors", "errors", "{:d}"),
    ("ttft_p50_ms", "ttft p50 ms", "{:.1f}"),
    ("ttft_p99_ms", "ttft p99 ms", "{:.1f}"),
    ("slowest_turn", "slowest turn", "{:d}"),
    ("slowest_ttft_ms", "its ttft ms", "{:.1f}"),
    ("slowest_endpoint", "its endpoint", "{}"),
    ("cost_usd", "cost usd", "{:.6f}"),
]


def format_conversation(conversation_id: str, rows: list[dict[str, Any]]) -> str:
    if not rows:
        return f"no turns of conversation {conversation_id!r} in the selected window"
    return f"conversation {conversation_id}: {len(rows)} turns\n" + _table(_TURN_COLUMNS, rows)


def format_summaries(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no turns with a conversation id in the selected window"
    return _table(_SUMMARY_COLUMNS, rows)


def _table(columns, rows: list[dict[str, Any]]) -> str:
    header = [title for _, title, _ in columns]
    body = [["-" if row[key] is None else fmt.format(row[key]) for key, _, fmt in columns] for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    numeric = {key for key, _, fmt in columns if fmt != "{}"}

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(width) if key in numeric else cell.ljust(width)
            for cell, width, (key, _, _) in zip(cells, widths, columns, strict=True)
        ).rstrip()

    return "\n".join([line(header), *(line(cells) for cells in body)])
