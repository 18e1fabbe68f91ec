"""One delivery attempt, in stages around pure decisions (as svix-server splits it):
prepare (load, or skip a delivery nobody wants) → send (sign, POST) → conclude (judge the
answer with `tracker.core.delivery`, record, count, log).

`attempt_delivery` returns when the next attempt is due; only the arq job `deliver_webhook`
turns that into `arq.Retry`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import httpx
from arq import Retry

from tracker import metrics
from tracker.core import backoff, delivery, estimates, signing
from tracker.core.records import (
    FINAL_EVENTS,
    Attempt,
    Client,
    Delivery,
    DeliveryState,
    Subscription,
    SubscriptionState,
)
from tracker.settings import Settings
from tracker.store import Store
from workers.context import WorkerContext

log = logging.getLogger("tracker.deliver")

_STATE_FOR_VERDICT = {
    delivery.Verdict.DELIVERED: DeliveryState.DELIVERED,
    delivery.Verdict.GONE: DeliveryState.GONE,
    delivery.Verdict.DEAD: DeliveryState.DEAD,
    delivery.Verdict.RETRY: DeliveryState.PENDING,
}


@dataclass(frozen=True)
class Prepared:
    """A pending delivery with the subscription and client it goes out for."""

    delivery: Delivery
    subscription: Subscription
    client: Client


@dataclass(frozen=True)
class Sent:
    """What one POST came to: an HTTP status, or an error with no answer."""

    started: float
    ended: float
    status_code: int | None
    error: str | None = None
    retry_after: float | None = None


async def prepare(store: Store, delivery_id: str) -> Prepared | None:
    """The delivery, if it is pending and still wanted; one whose subscription is gone is
    skipped here, without an attempt."""
    found = await store.deliveries.get(delivery_id)
    if found is None or found.state is not DeliveryState.PENDING:
        return None
    subscription = await store.tasks.subscription(found.subscription_id)
    now = time.time()
    client = await store.clients.get(subscription.client_id, now) if subscription else None
    if subscription is None or client is None or subscription.state is not SubscriptionState.ACTIVE:
        await store.deliveries.skip(delivery_id)
        return None
    return Prepared(found, subscription, client)


def headers(prepared: Prepared, now: float) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt, signed with the client's secrets."""
    timestamp = int(now)
    msg_id = prepared.delivery.id
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.sign(
            prepared.client.signing_secrets(now), msg_id, timestamp, prepared.delivery.body
        ),
    }


async def send(http: httpx.AsyncClient, prepared: Prepared, time_limit: float) -> Sent:
    """POST the event once. The receiver's body is never read: it is of no use, and may be
    huge."""
    started = time.time()
    try:
        async with http.stream(
            "POST",
            prepared.subscription.callback_url,
            content=prepared.delivery.body,
            headers=headers(prepared, started),
            timeout=time_limit,
        ) as response:
            retry_after = backoff.parse_retry_after(response.headers.get("retry-after"), started)
            return Sent(started, time.time(), response.status_code, retry_after=retry_after)
    except httpx.TimeoutException:
        return Sent(started, time.time(), None, "timeout")
    except Exception as exc:
        # Whatever failed (a refused address, a port the socket layer rejects, an error in an
        # ExceptionGroup), it is a failed attempt: recorded, and the schedule moves on.
        return Sent(started, time.time(), None, type(exc).__name__)


async def conclude(
    store: Store, settings: Settings, prepared: Prepared, sent: Sent, draw: float
) -> delivery.Decision:
    """Judge the attempt, record it with the delivery's next state, count and log it."""
    attempts = prepared.delivery.attempts + 1
    decision = delivery.decide(
        sent.status_code,
        attempts=attempts,
        retry_after=sent.retry_after,
        schedule=settings.delivery_schedule,
        jitter=settings.delivery_jitter,
        draw=draw,
    )
    now = sent.ended
    gone = decision.verdict is delivery.Verdict.GONE
    await store.deliveries.record_attempt(
        prepared.delivery.id,
        Attempt(
            at=sent.started,
            status_code=sent.status_code,
            error=sent.error,
            latency_ms=round((sent.ended - sent.started) * 1000, 1),
        ),
        state=_STATE_FOR_VERDICT[decision.verdict],
        next_attempt_at=now + decision.delay if decision.delay is not None else None,
        disable_subscription=prepared.subscription.id if gone else None,
    )
    _observe(prepared, sent, decision, attempts)
    return decision


def _observe(prepared: Prepared, sent: Sent, decision: delivery.Decision, attempts: int) -> None:
    metrics.DELIVERIES.labels(decision.verdict.value, metrics.attempt_label(attempts)).inc()
    metrics.DELIVERY_SECONDS.observe(sent.ended - sent.started)
    if decision.verdict is delivery.Verdict.DEAD:
        metrics.DEAD_DELIVERIES.inc()
    event = prepared.delivery
    if decision.verdict is delivery.Verdict.DELIVERED and event.event_type in FINAL_EVENTS:
        final_at = _upstream_final_time(event.body, sent.ended)
        metrics.NOTIFICATION_LAG.observe(max(0.0, sent.ended - final_at))
    log.info(
        "delivery attempt %d: %s",
        attempts,
        decision.verdict,
        extra={
            "task_id": event.task_id,
            "subscription_id": prepared.subscription.id,
            "event_id": event.id,
            "status_code": sent.status_code,
        },
    )


async def attempt_delivery(ctx: WorkerContext, delivery_id: str) -> float | None:
    """Attempt delivery `delivery_id` once; the seconds until its next attempt, or None when
    it has ended (or there was nothing to do)."""
    prepared = await prepare(ctx["store"], delivery_id)
    if prepared is None:
        return None
    sent = await send(ctx["http"], prepared, ctx["settings"].delivery_timeout)
    decision = await conclude(ctx["store"], ctx["settings"], prepared, sent, ctx["rng"].random())
    return decision.delay


async def deliver_webhook(ctx: WorkerContext, delivery_id: str) -> None:
    """The arq job: one attempt; `Retry` on the delivery's schedule until it ends."""
    delay = await attempt_delivery(ctx, delivery_id)
    if delay is not None:
        raise Retry(defer=delay)


def _upstream_final_time(body: bytes, fallback: float) -> float:
    """When the upstream turned the task final, from the event's copy of its answer."""
    try:
        upstream = json.loads(body)["data"]["upstream"]
    except (ValueError, KeyError, TypeError):
        return fallback
    return estimates.status_since(upstream, fallback)
