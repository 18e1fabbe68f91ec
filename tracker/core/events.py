"""The webhook events: which subscription gets which event, their ids, and the exact JSON bytes
that are signed and sent."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from tracker.core import jsontext
from tracker.core.origins import origin_of
from tracker.core.polling import model_of
from tracker.core.records import (
    EVENT_FOR_STATE,
    Delivery,
    DeliveryState,
    EventType,
    Result,
    Subscription,
    SubscriptionState,
    Task,
    TaskState,
)
from tracker.core.storage import wants_copies
from tracker.errors import TaskErrorCode


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
    outputs: list[dict[str, Any]] | None = None,
) -> bytes:
    """The JSON body of one event, as the bytes that will be signed.

    Built for each subscription on its own, and it cannot fail: should the subscription's
    metadata or the upstream answer not encode as JSON (the API and the upstream reader
    refuse or repair such values, so this is the last line), the event goes out without
    them, with the error code `event_unencodable`, rather than hold up the task.
    """
    error = (
        {"code": result.error_code, "message": result.error_message}
        if result.error_code is not None
        else None
    )
    data: dict[str, Any] = {
        "task_id": task_id,
        "state": str(result.state),
        "status": result.status,
        "video_url": result.video_url,
        "original_video_url": result.original_video_url,
        "enhanced_prompt": result.enhanced_prompt,
        "model": result.model,
        "error": error,
        "dropped_urls": list(result.dropped_urls),
        "metadata": subscription.metadata,
        "subscription_id": subscription.id,
        "upstream": upstream,
    }
    if outputs is not None:  # only where copies were asked for: other bodies stay as they were
        data["outputs"] = outputs
    payload = {"type": str(event_type), "timestamp": iso_time(at), "data": data}
    try:
        return jsontext.dumps(payload)
    except jsontext.UnsafeJson:
        data["metadata"] = data["upstream"] = None
        data["error"] = {
            "code": TaskErrorCode.EVENT_UNENCODABLE.value,
            "message": "the metadata or the upstream answer could not be encoded as JSON "
            "and were left out",
        }
        for name in ("status", "enhanced_prompt", "model", "video_url", "original_video_url"):
            data[name] = _safe_text(data[name])
        return jsontext.dumps(payload)


def _safe_text(value: Any) -> Any:
    return jsontext.repaired(value, max_depth=1) if isinstance(value, str) else value


def final_deliveries(
    task: Task,
    result: Result,
    upstream: dict[str, Any] | None,
    subscriptions: Iterable[Subscription],
    now: float,
) -> tuple[Delivery, ...]:
    """The final event of `task`, which ended as `result` with the final answer `upstream`,
    for each subscription that wants it. Their bodies are kept only while they are pending,
    and built again from the ended task afterwards (`final_body`), so the final answer is kept
    once, not once an event."""
    event_type = EVENT_FOR_STATE[result.state]
    return tuple(
        dataclasses.replace(
            delivery_for(sub, event_type, result, upstream, now),
            source=task.tracking_id,
            made_at=now,
        )
        for sub in subscriptions
        if sub.state is SubscriptionState.ACTIVE
        and event_type in sub.events
        and not wants_copies(sub, result)  # made once the copies are (`stored_deliveries`)
    )


def stored_deliveries(
    result: Result,
    upstream: dict[str, Any] | None,
    subscriptions: Iterable[Subscription],
    client_id: str,
    outputs: list[dict[str, Any]],
    now: float,
) -> tuple[Delivery, ...]:
    """The `video.completed` events that waited for `client_id`'s copies, carrying them
    (`outputs`, `tracker.core.storage.event_outputs`). Their bodies are kept for good (the
    copies' links are in no task record to build them again from)."""
    return tuple(
        dataclasses.replace(
            delivery_for(sub, EventType.COMPLETED, result, upstream, now, outputs=outputs),
            made_at=now,
        )
        for sub in subscriptions
        if sub.client_id == client_id
        and sub.state is SubscriptionState.ACTIVE
        and EventType.COMPLETED in sub.events
        and wants_copies(sub, result)
    )


def final_body(
    event_type: EventType,
    made_at: float,
    result: Result | None,
    upstream: dict[str, Any] | None,
    sub: Subscription,
) -> bytes | None:
    """The body of a final event made at `made_at` for `sub`, built again from what its
    ended task keeps (`result`, the final answer `upstream`): the very bytes
    `final_deliveries` made. None without a final result (the task record is gone)."""
    if result is None or not result.state.is_final:
        return None
    return event_body(
        event_type, task_id=sub.task_id, result=result, subscription=sub, upstream=upstream,
        at=made_at,
    )  # fmt: skip


def status_deliveries(
    task_id: str,
    status: str,
    polls: int,
    upstream: dict[str, Any] | None,
    subscriptions: Iterable[Subscription],
    now: float,
) -> tuple[Delivery, ...]:
    """`video.status_changed` events, for the subscriptions that asked for them.

    Poll number and status tell one change from another: each has an id of its own.
    """
    result = Result(state=TaskState.TRACKING, status=status, model=model_of(task_id))
    return tuple(
        delivery_for(sub, EventType.STATUS_CHANGED, result, upstream, now, f"{polls}:{status}")
        for sub in subscriptions
        if sub.state is SubscriptionState.ACTIVE and EventType.STATUS_CHANGED in sub.events
    )


def delivery_for(
    sub: Subscription,
    event_type: EventType,
    result: Result,
    upstream: dict[str, Any] | None,
    now: float,
    discriminator: str = "",
    *,
    outputs: list[dict[str, Any]] | None = None,
) -> Delivery:
    """A new pending delivery of one event to one subscription, due now (an event only, with
    no origin, for a subscription without a callback: see `tracker.store.deliveries`)."""
    body = event_body(
        event_type, task_id=sub.task_id, result=result, subscription=sub, upstream=upstream,
        at=now, outputs=outputs,
    )  # fmt: skip
    return Delivery(
        id=event_id(sub.id, event_type, discriminator),
        subscription_id=sub.id,
        task_id=sub.task_id,
        event_type=event_type,
        body=body,
        state=DeliveryState.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        origin=origin_of(sub.callback_url) if sub.callback_url else "",
        client_id=sub.client_id,
    )
