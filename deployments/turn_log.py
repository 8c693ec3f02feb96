"""A finished turn (``router.turn.TurnState``) as the turn log's record."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from router.turn import TurnState
from nemo_turnlog import AttemptRecord, TurnRecord

__all__ = ["turn_record"]


def turn_record(turn: TurnState) -> TurnRecord:
    """The turn log's record of a finished turn."""
    usage, cost = turn.usage, turn.cost
    attempts = [AttemptRecord(o.endpoint, o.kind.value, o.duration_s, o.http_status) for o in turn.outcomes]
    return TurnRecord(
        request_id=turn.request.request_id,
        timestamp=datetime.fromtimestamp(turn.request.received_at, tz=timezone.utc),
        model_group=turn.request.group,
        endpoint=turn.endpoint,
        provider=turn.provider,
        model=turn.model,
        streamed=turn.request.stream,
        status=turn.status,
        http_status=turn.http_status,
        error_type=turn.error_type,
        ttft_s=turn.ttft_s,
        total_s=turn.total_s,
        prompt_tokens=usage.prompt_tokens if usage else (cost.prompt_tokens if cost else None),
        completion_tokens=usage.completion_tokens if usage else (cost.completion_tokens if cost else None),
        total_tokens=usage.total_tokens if usage else None,
        attempts=attempts,
        fallback_count=max(0, len(attempts) - 1),
        api_key_id=turn.request.api_key_id,
        cost_usd=cost.usd if cost else None,
        cost_estimated=cost.estimated if cost else False,
        gateway_overhead_s=turn.overhead_s,
        tags=list(turn.request.tags),
        messages_json=json.dumps(turn.request.body.get("messages")) if turn.request.store_messages else None,
        hedged=turn.hedged,
        request_notes=list(turn.notes),
        error_detail=turn.error_detail,
        cached_tokens=usage.cached_tokens if usage else None,
        conversation_id=turn.request.conversation_id,
        conversation_turn=turn.request.conversation_turn,
        affinity=turn.request.affinity,
    )
