"""The delivery job: one signed POST to the callback, its attempt recorded, then what's next."""

from __future__ import annotations

import json
import logging
import time

import httpx
from arq import Retry

from tracker import backoff, delivery, estimates, metrics, signing
from tracker.domain import FINAL_EVENTS, Attempt, DeliveryState, SubscriptionState
from workers.context import WorkerContext

log = logging.getLogger("tracker.deliver")

_STATE_FOR_VERDICT = {
    delivery.Verdict.DELIVERED: DeliveryState.DELIVERED,
    delivery.Verdict.GONE: DeliveryState.GONE,
    delivery.Verdict.DEAD: DeliveryState.DEAD,
    delivery.Verdict.RETRY: DeliveryState.PENDING,
}


async def deliver_webhook(ctx: WorkerContext, delivery_id: str) -> None:
    """Attempt delivery `delivery_id` once; `Retry` on its schedule until it ends."""
    settings, store = ctx["settings"], ctx["store"]
    found = await store.delivery(delivery_id)
    if found is None or found.state is not DeliveryState.PENDING:
        return
    subscription = await store.subscription(found.subscription_id)
    client = await store.clients.get(subscription.client_id) if subscription else None
    if subscription is None or client is None or subscription.state is not SubscriptionState.ACTIVE:
        await store.skip_delivery(delivery_id)
        return

    started = time.time()
    timestamp = int(started)
    headers = {
        "content-type": "application/json",
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.sign(
            client.signing_secrets(started), delivery_id, timestamp, found.body
        ),
    }
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    try:
        # Streamed and never read: a receiver's body is of no use, and may be huge.
        async with ctx["http"].stream(
            "POST",
            subscription.callback_url,
            content=found.body,
            headers=headers,
            timeout=settings.delivery_timeout,
        ) as response:
            status_code = response.status_code
            retry_after = backoff.parse_retry_after(response.headers.get("retry-after"), started)
    except httpx.TimeoutException:
        error = "timeout"
    except httpx.HTTPError as exc:
        error = type(exc).__name__
    now = time.time()
    attempts = found.attempts + 1
    decision = delivery.decide(
        status_code,
        attempts=attempts,
        retry_after=retry_after,
        schedule=settings.delivery_schedule,
        jitter=settings.delivery_jitter,
        draw=ctx["rng"].random(),
    )
    next_at = now + decision.delay if decision.delay is not None else None
    await store.record_attempt(
        delivery_id,
        Attempt(
            at=started,
            status_code=status_code,
            error=error,
            latency_ms=round((now - started) * 1000, 1),
        ),
        state=_STATE_FOR_VERDICT[decision.verdict],
        next_attempt_at=next_at,
        disable_subscription=subscription.id if decision.verdict is delivery.Verdict.GONE else None,
    )
    metrics.DELIVERIES.labels(decision.verdict.value, metrics.attempt_label(attempts)).inc()
    metrics.DELIVERY_SECONDS.observe(now - started)
    if decision.verdict is delivery.Verdict.DEAD:
        metrics.DEAD_DELIVERIES.inc()
    if decision.verdict is delivery.Verdict.DELIVERED and found.event_type in FINAL_EVENTS:
        metrics.NOTIFICATION_LAG.observe(max(0.0, now - _upstream_final_time(found.body, now)))
    log.info(
        "delivery attempt %d: %s",
        attempts,
        decision.verdict,
        extra={
            "task_id": found.task_id,
            "subscription_id": subscription.id,
            "event_id": delivery_id,
            "status_code": status_code,
        },
    )
    if decision.delay is not None:
        raise Retry(defer=decision.delay)


def _upstream_final_time(body: bytes, fallback: float) -> float:
    """When the upstream turned the task final, from the event's copy of its answer."""
    try:
        upstream = json.loads(body)["data"]["upstream"]
    except (ValueError, KeyError, TypeError):
        return fallback
    return estimates.status_since(upstream, fallback)
