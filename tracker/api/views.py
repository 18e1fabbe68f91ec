"""How records look in the API's answers (JSON objects), separate from how they are kept."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tracker.core import signing
from tracker.core.events import iso_time
from tracker.core.feed import FeedEvent
from tracker.core.headers import masked
from tracker.core.origins import origin_of
from tracker.core.records import Attempt, Client, Delivery, Subscription, Task, TaskState
from tracker.store import SubscriptionView
from tracker.store.origins import OriginState


def subscription_json(sub: Subscription) -> dict[str, Any]:
    return {
        "id": sub.id,
        "task_id": sub.task_id,
        "callback_url": sub.callback_url or None,
        "metadata": sub.metadata,
        "events": [str(e) for e in sub.events],
        "state": str(sub.state),
        "created_at": iso_time(sub.created_at),
        "headers": masked(sub.header_names),
        "keep_videos": sub.keep_videos,
    }


def task_summary_json(task: Task, registered_at: float) -> dict[str, Any]:
    """A task as listed: its state and result, without subscriptions or the upstream answer."""
    result = task.result
    return {
        "task_id": task.task_id,
        "state": str(task.state),
        "upstream_status": task.upstream_status,
        "polls": task.polls,
        "registered_at": iso_time(registered_at),
        "updated_at": iso_time(task.updated_at),
        "result": None
        if result is None
        else {
            "video_url": result.video_url,
            "original_video_url": result.original_video_url,
            "enhanced_prompt": result.enhanced_prompt,
            "model": result.model,
            "error": None
            if result.error_code is None
            else {"code": result.error_code, "message": result.error_message},
        },
    }


def destination_json(state: OriginState) -> dict[str, Any]:
    """A callback origin's health: its circuit, failures in a row, when it may be tried."""
    return {
        "origin": state.origin,
        "circuit": str(state.circuit),
        "failures": state.failures,
        "retry_at": iso_time(state.open_until) if state.open_until else None,
    }


def task_json(
    task: Task, views: list[SubscriptionView], destinations: dict[str, OriginState]
) -> dict[str, Any]:
    """The body of `GET /v1/tasks/{task_id}`: only the caller's subscriptions, each with the
    health of the origin its webhooks go to."""
    summary = task_summary_json(task, min(v.subscription.created_at for v in views))
    return {
        **summary,
        "created_at": iso_time(task.created_at),
        "deadline_at": iso_time(task.deadline_at),
        "next_poll_at": iso_time(task.next_poll_at) if task.state is TaskState.TRACKING else None,
        "upstream": task.upstream,
        "subscriptions": [
            {
                **subscription_json(view.subscription),
                "destination": destination_json(
                    destinations[origin_of(view.subscription.callback_url)]
                )
                if view.subscription.callback_url
                else None,
                "deliveries": [
                    delivery_json(delivery, attempts) for delivery, attempts in view.deliveries
                ],
            }
            for view in views
        ],
    }


def delivery_json(delivery: Delivery, attempts: Sequence[Attempt]) -> dict[str, Any]:
    """A delivery with its attempts, each as it went (`GET /v1/deliveries/{id}`, and each
    subscription's deliveries in the task view)."""
    return {
        "id": delivery.id,
        "type": str(delivery.event_type),
        "state": str(delivery.state),
        "round": delivery.round,
        "attempts": [attempt_json(a) for a in attempts],
    }


def attempt_json(a: Attempt) -> dict[str, Any]:
    """One attempt: when, which round, the answer's status (or the error's class when none
    came), the request that was sent, the answer's headers and first 4 KiB of body, and the
    time to each step (ms; null where there was none: a reused connection)."""
    return {
        "at": iso_time(a.at),
        "round": a.round,
        "status_code": a.status_code,
        "error": a.error,
        "latency_ms": a.latency_ms,
        "request": {"url": a.url, "headers": a.request_headers} if a.url else None,
        "answer": (
            {"headers": a.answer_headers or [], "body": a.answer_body or ""}
            if a.status_code is not None and a.answer_headers is not None
            else None
        ),
        "timings": {
            "resolve_ms": a.resolve_ms,
            "connect_ms": a.connect_ms,
            "first_byte_ms": a.first_byte_ms,
            "total_ms": a.latency_ms,
        },
    }


def feed_event_json(event: FeedEvent, client: Client, now: float) -> dict[str, Any]:
    """One event of the client's feed: where it is (`cursor`), what it is, the exact `body`
    its webhooks carry, and the Standard Webhooks `headers` that sign that body at `now`
    with the client's secrets, so a forwarder (`qrtracker listen`) can pass it on as the
    webhook itself."""
    return {
        "cursor": event.cursor,
        "id": event.id,
        "type": str(event.type),
        "task_id": event.task_id,
        "subscription_id": event.subscription_id,
        "seq": event.seq,
        "created_at": iso_time(event.at),
        "body": event.body.decode(),
        "headers": signing.headers(client.signing_secrets(now), event.id, now, event.body),
    }
