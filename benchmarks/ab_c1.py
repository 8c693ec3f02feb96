"""The router's added TTFT at concurrency 1, this checkout against an older
one, with the machine's drift taken out: both routers run side by side (each
its own Ray instance, its own ports) on one simulated provider, and turns
alternate between them, A then B or B then A at random, one at a time. The
result is the median of the per-pair differences, and each router's median
added TTFT over direct calls interleaved the same way.

compare.py measures the two in separate rounds minutes apart, and on this
shared 2-core machine the same build moved by 4 ms between rounds: more than
a 0.5 ms budget. Interleaving puts both in the same seconds.

    python benchmarks/ab_c1.py --before-rev REV [--pairs 400] [--lean]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import PROVIDER, _stop_router_tree, _worktree  # noqa: E402
from loadgen import LoadResult, assert_loopback, chat_body, one_turn  # noqa: E402
from overhead import free_port, save_results, start_router, write_config  # noqa: E402

from simprovider import start_simulator  # noqa: E402

LEAN = {"planning": "snapshot", "upstream_calls": "ingress"}


async def interleave(targets: dict[str, tuple[str, str]], pairs: int, seed: int) -> dict[str, list[float]]:
    """TTFTs per target, one turn at a time, in a random order each round."""
    rng = random.Random(seed)
    ttfts: dict[str, list[float]] = {name: [] for name in targets}
    async with aiohttp.ClientSession() as session:
        for round_index in range(pairs + 10):
            order = list(targets)
            rng.shuffle(order)
            for name in order:
                url, model = targets[name]
                result = LoadResult()
                await one_turn(session, f"{url}/chat/completions", chat_body(model), result)
                if round_index >= 10 and result.ttft_s:  # the first rounds warm up
                    ttfts[name].append(result.ttft_s[0])
                elif round_index >= 10:
                    ttfts[name].append(float("nan"))
    return ttfts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before-rev", required=True)
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--lean", action="store_true", help="both routers in the lean shape")
    parser.add_argument("--out", default="ab_c1")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        before_dir = stack.enter_context(_worktree(args.before_rev))
        sim = stack.enter_context(start_simulator({"bench": PROVIDER}))
        targets = {"direct": (sim.base_url("bench"), "sim-model")}
        for name, code_dir in (("before", before_dir), ("after", None)):
            directory = tmp / name
            directory.mkdir()
            port = free_port()
            config = write_config(directory, sim.base_url("bench"), port)
            if args.lean:
                data = yaml.safe_load(config.read_text())
                data["deployments"] = LEAN
                config.write_text(yaml.safe_dump(data))
            url = f"http://127.0.0.1:{port}"
            assert_loopback(url)
            print(f"starting the router ({name}) ...", flush=True)
            process = start_router(config, "fast", port, directory / "router.log", code_dir=code_dir)
            stack.callback(_stop_router_tree, process)
            targets[name] = (f"{url}/v1", "bench")
        ttfts = asyncio.run(interleave(targets, args.pairs, seed=1))
    ms = {name: [1000 * t for t in values] for name, values in ttfts.items()}
    rounds = [i for i in range(len(ms["direct"])) if all(ms[n][i] == ms[n][i] for n in ms)]  # no NaN
    added = {n: statistics.median(ms[n][i] - ms["direct"][i] for i in rounds) for n in ("before", "after")}
    diff = [ms["after"][i] - ms["before"][i] for i in rounds]
    diffs_sorted = sorted(diff)
    low, high = diffs_sorted[int(0.25 * len(diff))], diffs_sorted[int(0.75 * len(diff))]
    shape = "lean" if args.lean else "default"
    text = (
        f"| shape | pairs | direct TTFT p50 | before: added (median) | after: added (median) | after - before, median of pairs (IQR) |\n"
        f"|---|---|---|---|---|---|\n"
        f"| {shape} | {len(rounds)} | {statistics.median(ms['direct']):.1f} ms | +{added['before']:.2f} ms | "
        f"+{added['after']:.2f} ms | {statistics.median(diff):+.2f} ms ({low:+.2f} to {high:+.2f}) |"
    )
    print(text)
    report = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "before_rev": args.before_rev,
              "shape": shape, "pairs": len(rounds), "ttft_ms": ms}
    save_results(f"{args.out}-{shape}", report, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
