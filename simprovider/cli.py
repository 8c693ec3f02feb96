"""Command line: `python -m simprovider [--host H] [--port P] [--profile SPEC]...`.

A profile spec is `NAME` or `NAME:key=value,key=value` (see `spec.py`), e.g.

    python -m simprovider --port 9100 \\
        --profile fast:ttft_ms=40,token_interval_ms=5 \\
        --profile flaky:failure=http_503,retry_after_s=1,failure_count=3
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pydantic import ValidationError

from .behavior import Behavior, merge_behavior
from .profiles import DEFAULT_PROFILE
from .runner import bind_socket, run_server
from .spec import parse_profile_spec

__all__ = ["main"]

DEFAULT_HOST = "127.0.0.1"
"""Loopback unless told otherwise: the simulator has no authentication."""

DEFAULT_PORT = 9100


def _build_profiles(specs: Sequence[str]) -> dict[str, Behavior]:
    profiles: dict[str, Behavior] = {DEFAULT_PROFILE: Behavior()}
    for spec in specs:
        name, fields = parse_profile_spec(spec)
        # A repeated name layers onto the earlier spec instead of replacing it.
        profiles[name] = merge_behavior(profiles.get(name, Behavior()), fields)
    return profiles


def _arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simprovider",
        description="Simulated LLM provider (OpenAI, Anthropic, Gemini formats) with scripted latency and failures.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"bind address (default {DEFAULT_HOST})")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port, 0 for any free one (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="NAME[:k=v,...]",
        help="add or configure a profile served under /NAME (repeatable)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = _arg_parser()
    args = parser.parse_args(argv)
    try:
        profiles = _build_profiles(args.profile)
    except (ValueError, ValidationError) as exc:
        parser.error(f"--profile: {exc}")
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        parser.exit(1, f"simprovider: cannot listen on {args.host}:{args.port}: {exc}\n")
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host

    def announce() -> None:
        print(f"simprovider listening on http://{shown_host}:{port} profiles=[{','.join(profiles)}]", flush=True)

    run_server(sock, profiles, on_ready=announce)
