"""The PNG of a compare.py result: grouped bars per concurrency level, one
bar per target (direct, each router variant, LiteLLM), in four panels: TTFT
and total time (solid p50 in front of a pale p99, log scale), turns per
second, and the gateway's CPU milliseconds per turn.

    python benchmarks/plot.py benchmarks/results/compare.json   # rewrites compare.png beside it
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

__all__ = ["plot_compare"]

COLORS = {"direct": "#7f7f7f", "litellm": "#d62728"}
VARIANT_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#17becf")
# (panel title, p50 key, p99 key or None, scale to the unit shown, log y)
PANELS = (
    ("TTFT ms (solid p50, pale p99)", "ttft_p50_ms", "ttft_p99_ms", 1, True),
    ("total ms (solid p50, pale p99)", "total_p50_ms", "total_p99_ms", 1, True),
    ("turns/s", "turns_per_s", None, 1, False),
    ("gateway CPU ms per turn (process tree)", "cpu_s_per_turn", None, 1000, False),
)


def plot_compare(report: dict, path: Path) -> None:
    series = _series(report)
    concurrencies = [level["concurrency"] for level in report["levels"]]
    figure, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    for axis, panel in zip(axes.flat, PANELS):
        _panel(axis, series, concurrencies, *panel)
    axes.flat[0].legend(fontsize=8, loc="upper left")
    machine = report["machine"]
    figure.suptitle(
        f"direct vs router vs LiteLLM {report['litellm']['version']}: provider TTFT {report['provider']['ttft_ms']} ms, "
        f"{report['provider']['tokens']} tokens; {machine['cpus']} cores; {report['started_at']}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _series(report: dict) -> list[tuple[str, str, str | None, dict[int, dict]]]:
    """(label, color, hatch, {concurrency: summary}) per target per round.
    Direct and LiteLLM are measured in every round; with several rounds
    their labels say which, and later rounds' bars are hatched."""
    rounds, out = report["rounds"], []
    for index, round_ in enumerate(rounds):
        by_target: dict[str, dict[int, dict]] = {}
        for level, rows in round_["levels"].items():
            for name, summary in rows.items():
                by_target.setdefault(name, {})[int(level[1:])] = summary
        for name, levels in by_target.items():
            label = name if len(rounds) == 1 or name == round_["variant"] else f"{name} ({round_['variant']} round)"
            color = COLORS.get(name) or VARIANT_COLORS[index % len(VARIANT_COLORS)]
            hatch = "//" if index and name in COLORS else None
            out.append((label, color, hatch, levels))
    return out


def _panel(axis, series, concurrencies: list[int], title: str, key: str, p99_key: str | None, scale: float, log: bool) -> None:
    width = 0.8 / len(series)
    for i, (label, color, hatch, levels) in enumerate(series):
        xs = [c_index + (i - (len(series) - 1) / 2) * width for c_index in range(len(concurrencies))]
        if p99_key:
            axis.bar(xs, [_value(levels, c, p99_key, scale) for c in concurrencies], width, color=color, alpha=0.3)
        values = [_value(levels, c, key, scale) for c in concurrencies]
        bars = axis.bar(xs, values, width, color=color, hatch=hatch, edgecolor="white" if hatch else None, label=label)
        axis.bar_label(bars, labels=[_short(v) for v in values], fontsize=6, padding=1)
    axis.set_xticks(range(len(concurrencies)), [f"concurrency {c}" for c in concurrencies])
    axis.set_title(title, fontsize=10)
    if log:
        axis.set_yscale("log")
        axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.yaxis.set_minor_formatter(FuncFormatter(_minor_label))
        axis.tick_params(axis="y", which="minor", labelsize=7)
    axis.grid(axis="y", alpha=0.3)


def _minor_label(value: float, _position) -> str:
    """Only 2, 3 and 5 times a power of ten: all nine crowd the axis."""
    return f"{value:g}" if f"{value:e}"[0] in "235" else ""


def _value(levels: dict[int, dict], concurrency: int, key: str, scale: float) -> float:
    value = levels.get(concurrency, {}).get(key)
    return float("nan") if value is None else value * scale


def _short(value: float) -> str:
    if value != value:  # NaN: not measured, or not applicable (direct has no gateway)
        return ""
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


if __name__ == "__main__":
    source = Path(sys.argv[1])
    plot_compare(json.loads(source.read_text()), source.with_suffix(".png"))
    print(f"wrote {source.with_suffix('.png')}")
