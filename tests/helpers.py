"""Small helpers shared by the end-to-end tests."""

from __future__ import annotations

import time


def wait_for_records(path, request_ids: set[str], timeout_s: float = 15.0) -> dict[str, dict]:
    from turnlog import read_turn_log

    deadline = time.monotonic() + timeout_s
    rows: dict[str, dict] = {}
    while time.monotonic() < deadline:
        table = read_turn_log(path)
        rows = {r["request_id"]: r for r in table.to_pylist() if r["request_id"] in request_ids}
        if len(rows) == len(request_ids):
            return rows
        time.sleep(0.25)
    return rows
