"""``nemo-router``: run the router locally.

    nemo-router run                      # embedded default: simulated providers, local Parquet log
    nemo-router run --config FILE        # your configuration
    nemo-router report PATH_OR_S3_URL [--since 1h] [--by model|endpoint|key|conversation] [--period month] [--conversation ID] [--format json]

Ray Serve reads its tuning flags from the environment when it is imported,
in every Ray process, so they are set here before anything imports Ray.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

__all__ = ["main"]

# Measured in benchmarks/overhead.py (see the README): the faster default.
SERVE_FLAGS = {
    "fast": {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
    "classic": {"RAY_SERVE_ENABLE_HA_PROXY": "0", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"},
}
DEFAULT_SERVE_MODE = "fast"


def apply_serve_mode(mode: str, environ=os.environ) -> None:
    """Set Ray Serve's flags for ``mode`` unless the user set them already."""
    for key, value in SERVE_FLAGS[mode].items():
        environ.setdefault(key, value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nemo-router")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start Ray, the router and (by default) simulated providers")
    run.add_argument("--config", help="router YAML; default: the embedded default with simulated providers")
    run.add_argument("--port", type=int, default=None, help="HTTP port (default: the config's, 8000)")
    run.add_argument("--serve-mode", choices=sorted(SERVE_FLAGS), default=DEFAULT_SERVE_MODE)
    run.add_argument("--turn-log", default="./turnlog-data", help="turn-log folder for the embedded default")
    report = commands.add_parser("report", help="p50/p99 latency, errors, tokens and cost per model from the turn log")
    from nemo_turnlog import report as turnlog_report  # no Ray: safe before the flags

    turnlog_report.add_arguments(report)
    args = parser.parse_args(argv)
    if args.command == "report":
        return turnlog_report.run(args)
    apply_serve_mode(args.serve_mode)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    from deployments.local import LocalRouter  # imports Ray: only after the flags are set
    from router.keys import LOCAL_ADMIN_KEY, LOCAL_KEY

    with LocalRouter.start(config_path=args.config, port=args.port, turn_log_path=args.turn_log) as router:
        print(f"nemo-router listening on {router.url}  (model groups: {', '.join(router.config.model_groups)})")
        key = "YOUR_KEY"
        if router.simulator is not None:
            key = LOCAL_KEY
            print(f"  embedded default: local API key {LOCAL_KEY} (admin: {LOCAL_ADMIN_KEY}); not for production")
        print(f"  try: curl -N {router.url}/v1/chat/completions -H 'authorization: Bearer {key}' \\")
        print("        -H 'content-type: application/json' \\")
        first_group = next(iter(router.config.model_groups))
        print(f"        -d '{{\"model\": \"{first_group}\", \"stream\": true, \"messages\": [{{\"role\": \"user\", \"content\": \"hi\"}}]}}'")
        grace_s = router.config.server.stop_grace_s
        print(f"  Ctrl-C (or SIGTERM) stops it, letting turns in flight finish for up to {grace_s:g} s; twice stops it now.", flush=True)
        stop = threading.Event()

        def on_signal(*_):
            if stop.is_set():  # the second: cut the drain short
                router.skip_drain = True
                raise KeyboardInterrupt
            stop.set()

        # Set after Ray has started: Ray installs handlers of its own.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, on_signal)
        while not stop.wait(0.5):
            pass
        print(f"nemo-router stopping: refusing new turns, draining for up to {grace_s:g} s", flush=True)
    report = router.stop_report
    if report is not None:
        print(
            f"nemo-router stopped: {report.in_flight} turns in flight at the stop, {report.in_flight - report.stopped} finished, "
            f"{report.stopped} ended by the router; drained in {report.seconds:.1f} s; turn log flushed",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
