"""Small helpers shared by the end-to-end tests."""

from __future__ import annotations

import time

# Client keys of the test router (declared by hash in its config).
TEST_KEY = "sk-test-all-models"
NARROW_KEY = "sk-test-voice-fast-only"
LIMITED_KEY = "sk-test-three-per-minute"
ADMIN_KEY = "sk-test-admin"
AUTH = {"authorization": f"Bearer {TEST_KEY}"}
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


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
