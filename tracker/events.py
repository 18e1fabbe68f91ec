"""The webhook events: their ids and the exact JSON bytes that are signed and sent."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from tracker.domain import EventType, Result, Subscription


def event_id(subscription_id: str, event_type: EventType, discriminator: str = "") -> str:
    """The `webhook-id` of one event for one subscription.

    Derived, not random: should a task ever be finished twice (a crash between two writes),
    the same outcome yields the same id, so receivers that dedupe on it see one event.
    """
    digest = hashlib.sha256(f"{subscription_id}\n{event_type}\n{discriminator}".encode()).digest()
    return "msg_" + base64.b32encode(digest[:15]).decode().lower()


def iso_time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_body(
    event_type: EventType,
    *,
    task_id: str,
    result: Result,
    subscription: Subscription,
    upstream: dict[str, Any] | None,
    at: float,
) -> bytes:
    """The JSON body of one event, as the bytes that will be signed."""
    error = (
        {"code": result.error_code, "message": result.error_message}
        if result.error_code is not None
        else None
    )
    payload = {
        "type": str(event_type),
        "timestamp": iso_time(at),
        "data": {
            "task_id": task_id,
            "state": str(result.state),
            "status": result.status,
            "video_url": result.video_url,
            "original_video_url": result.original_video_url,
            "enhanced_prompt": result.enhanced_prompt,
            "model": result.model,
            "error": error,
            "metadata": subscription.metadata,
            "subscription_id": subscription.id,
            "upstream": upstream,
        },
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
