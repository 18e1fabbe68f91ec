"""One delivery attempt, in stages around pure decisions (as svix-server splits it):
prepare (load, or skip a delivery nobody wants) → admit (a slot of its origin, unless the
origin is open or busy) → send (sign, POST, all within one deadline) → conclude (judge the
answer with `tracker.core.delivery`, record, count, log) → release (the slot, and the outcome
to the origin's breaker).

`attempt_delivery` is called by the dispatcher (`workers.dispatcher`) with the delivery
leased; what it records moves the delivery's due time (or ends it). A delivery put off by its
origin holds no worker slot while it waits, and spends none of its attempts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from redis.exceptions import RedisError

from tracker import metrics, tracing
from tracker.core import backoff, delivery, estimates, origins, signing
from tracker.core.headers import MASK
from tracker.core.records import (
    FINAL_EVENTS,
    Attempt,
    Client,
    Delivery,
    DeliveryState,
    Subscription,
    SubscriptionState,
)
from tracker.net.callbacks import Answer, Sender
from tracker.settings import Settings
from tracker.store import Outgoing, Shard
from tracker.store.origins import Breaker
from workers.announce import announce_now
from workers.context import WorkerContext

log = logging.getLogger("tracker.deliver")

# How many times a refused write of an attempt is tried (about 8 s in all, within the lease).
RECORD_TRIES = 12
DISABLED = 2  # what the release of an attempt's slot says when it disabled the destination

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
    # The headers its client has sent with each webhook, opened (`tracker.core.headers`).
    extra_headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def origin(self) -> str:
        return origins.origin_of(self.subscription.callback_url)


@dataclass(frozen=True)
class Sent:
    """What one attempt came to: an HTTP status, or an error with no answer; with the
    request's headers and the answer as the sender gave it (its details, where it keeps
    them)."""

    started: float
    ended: float
    status_code: int | None
    error: str | None = None
    retry_after: float | None = None
    request_headers: dict[str, str] | None = None
    answer: Answer | None = None


async def prepare(store: Shard, delivery_id: str, parts: Outgoing | None = None) -> Prepared | None:
    """The delivery, if it is pending and still wanted; one whose subscription is gone is
    skipped here, without an attempt. `parts`, when the caller read them already (the
    dispatcher reads a claimed batch's together), save reading them again."""
    if parts is None:
        parts = (await store.outgoing([delivery_id], store.clock.now()))[delivery_id]
    found, subscription, client = parts
    if found is None or found.state is not DeliveryState.PENDING:
        await store.deliveries.forget_due(delivery_id)  # ended, expired, or an orphan
        return None
    if (
        subscription is None
        or client is None
        or client.revoked  # nothing more goes out on its behalf
        or subscription.state is not SubscriptionState.ACTIVE
        or not found.body  # a final event whose task record is gone: nothing to send
    ):
        await store.deliveries.skip(delivery_id)
        return None
    extra = (
        json.loads(store.clients.vault.open(subscription.sealed_headers))
        if subscription.sealed_headers
        else {}
    )
    return Prepared(found, subscription, client, extra)


def headers(prepared: Prepared, now: float) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt, signed with the client's secrets, after
    the client's own (which can name none of these: `tracker.core.headers`)."""
    signed = signing.headers(
        prepared.client.signing_secrets(now), prepared.delivery.id, now, prepared.delivery.body
    )
    return {**prepared.extra_headers, "content-type": "application/json", **signed}


async def send(
    callbacks: Sender, prepared: Prepared, time_limit: float, clock: Callable[[], float]
) -> Sent:
    """POST the event once, timed and signed by `clock` (the fleet's). Everything, from
    resolving the host to the last byte read of the answer, happens within `time_limit`:
    per-read time-outs alone would never cut off a receiver that trickles its answer."""
    started = clock()
    signed = headers(prepared, started)
    try:
        async with asyncio.timeout(time_limit):
            answer = await callbacks.post(
                prepared.subscription.callback_url, prepared.delivery.body, signed
            )
    except TimeoutError:
        return Sent(started, clock(), None, "timeout", request_headers=signed)
    except Exception as exc:
        # Whatever failed (a refused address, a port the socket layer rejects, an error in an
        # ExceptionGroup), it is a failed attempt: recorded, and the schedule moves on.
        return Sent(started, clock(), None, type(exc).__name__, request_headers=signed)
    retry_after = backoff.parse_retry_after(answer.retry_after, started)
    return Sent(
        started, clock(), answer.status, retry_after=retry_after, request_headers=signed,
        answer=answer,
    )  # fmt: skip


def judge(settings: Settings, prepared: Prepared, sent: Sent, draw: float) -> delivery.Decision:
    """What the attempt means for the delivery (pure: `tracker.core.delivery`)."""
    return delivery.decide(
        sent.status_code,
        attempts=prepared.delivery.attempts + 1,
        retry_after=sent.retry_after,
        schedule=settings.delivery_schedule,
        jitter=settings.delivery_jitter,
        draw=draw,
    )


async def conclude(
    store: Shard,
    settings: Settings,
    prepared: Prepared,
    sent: Sent,
    draw: float,
    slot: Breaker | None = None,
) -> delivery.Decision:
    """Judge the attempt, record it with the delivery's next state (and give back its origin
    slot, with `slot`: see `record`), count and log it."""
    decision = judge(settings, prepared, sent, draw)
    return await record(store, prepared, sent, decision, slot, detailed=settings.record_answers)


def attempt_of(prepared: Prepared, sent: Sent, *, detailed: bool) -> Attempt:
    """The attempt as its log keeps it: with `detailed` (TRACKER_RECORD_ANSWERS), the
    request's URL and headers, and the answer's headers, body and times, each bounded."""
    answer = sent.answer
    base = Attempt(
        at=sent.started,
        status_code=sent.status_code,
        error=sent.error,
        latency_ms=round((sent.ended - sent.started) * 1000, 1),
        round=prepared.delivery.round,
    )
    if not detailed:
        return base
    return dataclasses.replace(
        base,
        url=prepared.subscription.callback_url,
        request_headers=(
            {k: MASK if k in prepared.extra_headers else v for k, v in sent.request_headers.items()}
            if sent.request_headers is not None
            else None
        ),
        answer_headers=delivery.headers_excerpt(answer.headers) if answer else None,
        answer_body=delivery.body_excerpt(answer.body) if answer else None,
        resolve_ms=answer.resolve_ms if answer else None,
        connect_ms=answer.connect_ms if answer else None,
        first_byte_ms=answer.first_byte_ms if answer else None,
    )


async def record(
    store: Shard,
    prepared: Prepared,
    sent: Sent,
    decision: delivery.Decision,
    slot: Breaker | None = None,
    *,
    detailed: bool = True,
) -> delivery.Decision:
    """Append the attempt to the log and move the delivery on, as `decision` says; with
    `slot` (its origin's breaker), also give back the origin slot the attempt held and count
    its outcome, in the same step (one round trip).

    A write Redis refuses (full memory, a failover) is tried again for a while: the POST was
    made, and recording it beats making it again. An attempt whose delivery moved on
    meanwhile (this worker was paused past its lease, or a redeliver came) is not recorded.
    """
    attempt = attempt_of(prepared, sent, detailed=detailed)
    state = _STATE_FOR_VERDICT[decision.verdict]
    # Whether the record noted an operational event (`workers.announce`): an end dead, or a
    # destination disabled.
    announce = decision.verdict is delivery.Verdict.DEAD
    next_at = sent.ended + decision.delay if decision.delay is not None else None
    gone = decision.verdict is delivery.Verdict.GONE
    pause = 0.05
    for tries in range(RECORD_TRIES):
        try:
            if slot is None:
                recorded = await store.deliveries.record_attempt(
                    prepared.delivery, attempt, state=state, next_attempt_at=next_at,
                    disable_subscription=gone,
                )  # fmt: skip
            else:
                recorded, opened = await store.conclude_attempt(
                    prepared.delivery, attempt, state=state, next_attempt_at=next_at,
                    disable_subscription=gone, client_id=prepared.client.id,
                    origin=prepared.origin, failed=origins.is_failure(sent.status_code),
                    now=sent.ended, breaker=slot,
                )  # fmt: skip
                if opened == DISABLED:
                    log.warning(
                        "a destination failing without a break was disabled",
                        extra={"event_id": prepared.delivery.id},
                    )
                    announce = True
                elif opened:
                    _opened(prepared.delivery.id)
            break
        except RedisError:
            if tries == RECORD_TRIES - 1:
                raise
            log.warning("recording an attempt failed; trying again", exc_info=True)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)
    if not recorded:
        metrics.STALE_ATTEMPTS.inc()
        log.warning(
            "an attempt was not recorded: its delivery had moved on",
            extra={"event_id": prepared.delivery.id, "status_code": sent.status_code},
        )
        return decision
    _observe(prepared, sent, decision)
    if announce:
        await announce_now(store)
    return decision


def _observe(prepared: Prepared, sent: Sent, decision: delivery.Decision) -> None:
    attempts = prepared.delivery.attempts + 1
    metrics.DELIVERIES.labels(decision.verdict.value, metrics.attempt_label(attempts)).inc()
    metrics.DELIVERY_SECONDS.observe(sent.ended - sent.started)
    if decision.verdict is delivery.Verdict.DEAD:
        metrics.DEAD_DELIVERIES.inc()
    event = prepared.delivery
    if decision.verdict is delivery.Verdict.DELIVERED and event.event_type in FINAL_EVENTS:
        final_at = _upstream_final_time(event.body, sent.ended)
        metrics.NOTIFICATION_LAG.observe(max(0.0, sent.ended - final_at))
    # A delivered attempt's line is for debugging (its record is in the attempt log the API
    # shows): at `info`, a line for every webhook cost a busy worker a tenth of its CPU.
    log.log(
        logging.DEBUG if decision.verdict is delivery.Verdict.DELIVERED else logging.INFO,
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


async def attempt_delivery(
    ctx: WorkerContext,
    store: Shard,
    delivery_id: str,
    *,
    claimed: str = "",
    parts: Outgoing | None = None,
) -> float | None:
    """Attempt delivery `delivery_id` of `store`'s partition once, if its origin admits it;
    the seconds until it is due again, or None once it has ended (or there was nothing to
    attempt).

    `claimed` says how the dispatcher's claim took it: with a slot of its origin (`slot`), as
    its origin's probe (`probe`), or without (`plain` or empty: a slot is taken here). `parts`
    are its records, if the caller read them already.
    """
    settings = ctx["settings"]
    holds_slot = claimed in {"slot", "probe"}
    prepared = await prepare(store, delivery_id, parts)
    if prepared is None:
        if holds_slot:
            await store.origins.vacate(delivery_id, probe=claimed == "probe")
        return None
    now = store.clock.now()
    if now >= prepared.delivery.created_at + settings.delivery_window:
        # Its origin kept it waiting past its whole schedule: it ends, by time, as any other.
        expired = Sent(now, now, None, "origin unavailable for the whole schedule")
        await record(store, prepared, expired, delivery.Decision(delivery.Verdict.DEAD))
        if holds_slot:
            await store.origins.vacate(delivery_id, probe=claimed == "probe")
        return None
    if not holds_slot:
        answer, open_until = await store.origins.acquire(
            prepared.client.id,
            prepared.origin,
            delivery_id,
            now,
            lease_until=now + settings.lease,
            slots=settings.delivery_per_origin,
            per_client=settings.deliveries_per_client,
        )
        gate = origins.wait_until(answer, open_until, now, ctx["rng"].random())
        if not gate.admitted:
            metrics.DELIVERY_DEFERRALS.labels("busy" if answer < 0 else "open").inc()
            await store.deliveries.postpone(delivery_id, gate.retry_at)
            return gate.retry_at - now
    released = False
    event = prepared.delivery
    try:
        with tracing.task_span(
            "webhook attempt", event.source or event.task_id, event_id=event.id,
            event_type=str(event.event_type), attempt=event.attempts + 1,
        ) as span:  # fmt: skip
            sent = await send(
                ctx["callbacks"], prepared, settings.delivery_timeout, store.clock.now
            )
            decision = await conclude(
                store, settings, prepared, sent, ctx["rng"].random(), slot=breaker(settings)
            )
            if span is not None:
                span.set_attribute("qrtracker.status_code", sent.status_code or 0)
                span.set_attribute("qrtracker.verdict", str(decision.verdict))
        released = True
    finally:
        if not released:  # the record failed for good: the slot still goes back, as a failure
            opened = await store.origins.release(
                prepared.client.id, prepared.origin, delivery_id, failed=True,
                now=store.clock.now(), breaker=breaker(settings),
            )  # fmt: skip
            if opened:
                _opened(delivery_id)
    return decision.delay


def _opened(delivery_id: str) -> None:
    metrics.ORIGINS_OPENED.inc()
    log.warning("a callback origin's circuit opened", extra={"event_id": delivery_id})


def breaker(settings: Settings) -> Breaker:
    return Breaker(
        settings.breaker_failures, settings.breaker_open, settings.breaker_max_open,
        settings.disable_after,
    )  # fmt: skip


def _upstream_final_time(body: bytes, fallback: float) -> float:
    """When the upstream turned the task final, from the event's copy of its answer."""
    try:
        upstream = json.loads(body)["data"]["upstream"]
    except (ValueError, KeyError, TypeError):
        return fallback
    return estimates.status_since(upstream, fallback)
