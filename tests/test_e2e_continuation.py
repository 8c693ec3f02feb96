"""A stream that breaks after words were spoken continues on the next link,
spliced into the same client stream with no word repeated or missing."""

from __future__ import annotations

import time
import uuid

import pytest
from helpers import TEST_KEY, wait_for_records

pytestmark = pytest.mark.ray

USER = [{"role": "user", "content": "count to twenty"}]
WORDS_1_TO_20 = " ".join(f"w{i}" for i in range(1, 21))


@pytest.mark.parametrize(("group", "first", "outcome"), [("continue", "cont-cut", "disconnected"), ("continue-stall", "stall-a", "timeout")])
def test_broken_stream_is_continued_gap_free_with_the_official_client(router, turn_log_path, group, first, outcome):
    from openai import OpenAI

    request_id = f"test-{group}-{uuid.uuid4().hex[:8]}"
    client = OpenAI(base_url=f"{router}/v1", api_key=TEST_KEY, max_retries=0, timeout=20)
    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(
        model=group, messages=USER, stream=True, stream_options={"include_usage": True}, extra_headers={"x-request-id": request_id}
    )
    assert raw.headers["x-nemo-endpoint"] == first
    text, ids = "", set()
    for chunk in raw.parse():
        ids.add(chunk.id)
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
    assert text == WORDS_1_TO_20
    assert len(ids) == 1  # one stream, one completion id, across the seam
    assert time.monotonic() - started < 5

    record = wait_for_records(turn_log_path, {request_id})[request_id]
    assert [a["outcome"] for a in record["attempts"]] == [outcome, "ok"]
    assert record["status"] == "ok"
