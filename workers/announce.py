"""Announcing operational events (`tracker.core.operations`): each note the record scripts
left in the outbox becomes its event in the client's feed, and a delivery to the client's
operational subscription where it asks for that type.

A worker announces at once what its own attempt noted; the sweeper announces what a crash
left behind. Both may try the same note: the announcement is compare-and-set on the note, so
each happening is announced once.
"""

from __future__ import annotations

import dataclasses
import logging

from redis.exceptions import RedisError

from tracker.core import operations
from tracker.core.operations import Note
from tracker.core.origins import origin_of
from tracker.core.records import (
    OPERATIONAL_EVENTS,
    Delivery,
    DeliveryState,
    SubscriptionState,
)
from tracker.store import Shard

log = logging.getLogger("tracker.operations")

BATCH = 100  # notes read at once


async def announce_waiting(store: Shard, noted_by: float, most: int = 1000) -> int:
    """Announce the notes made by `noted_by` (up to `most`); how many this call announced."""
    announced = 0
    for _ in range(max(1, most // BATCH)):
        notes = await store.operations.waiting(noted_by, BATCH)
        for note in notes:
            announced += await announce(store, note)
        if len(notes) < BATCH:
            break
    return announced


async def announce_now(store: Shard) -> None:
    """Announce what the caller's attempt just noted (with whatever else waits); a failure is
    left to the sweeper, which tries again."""
    try:
        await announce_waiting(store, store.clock.now(), most=BATCH)
    except RedisError:
        log.warning("announcing operational events failed; the sweeper tries again", exc_info=True)


async def announce(store: Shard, note: Note) -> int:
    """Announce one note (1), or drop it when what it names is gone (0)."""
    now = store.clock.now()
    event = await _event(store, note, now)
    if event is None:
        await store.operations.drop(note)
        return 0
    sub = await store.operations.subscription(note.client_id)
    outgoing = None
    if sub is not None and sub.state is SubscriptionState.ACTIVE and event.event_type in sub.events:
        outgoing = dataclasses.replace(
            event, subscription_id=sub.id, task_id="", origin=origin_of(sub.callback_url)
        )
    done = await store.operations.announce(note, event, outgoing, now)
    if done:
        log.info(
            "announced %s", event.event_type, extra={"event_id": event.id, "task_id": event.task_id}
        )
    return int(done)


async def _event(store: Shard, note: Note, now: float) -> Delivery | None:
    """The event a note stands for, as its feed entry (the subscription and task it is about,
    where it is about one); None when what it names is gone."""
    if note.kind == operations.EXHAUSTED:
        dead = await store.deliveries.get(note.subject)
        if dead is None or dead.event_type in OPERATIONAL_EVENTS:
            return None
        attempts = await store.deliveries.attempts(dead.id)
        sub = await store.tasks.subscription(dead.subscription_id)
        body = operations.exhausted_body(
            dead, attempts[-1] if attempts else None, sub.callback_url if sub else "", now
        )
        about = (dead.subscription_id, dead.task_id)
    else:
        figures = await store.origins.figures(note.client_id, note.subject)
        body = operations.disabled_body(note.subject, figures, now)
        about = ("", "")
    return Delivery(
        id=note.event_id,
        subscription_id=about[0],
        task_id=about[1],
        event_type=note.event_type,
        body=body,
        state=DeliveryState.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        client_id=note.client_id,
    )
