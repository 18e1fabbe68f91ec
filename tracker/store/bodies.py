"""What final events' bodies are built from, read for many events in one round trip: their
subscriptions, and their tasks' stored results and final answers (see `Delivery.source`).
The dispatcher's batches (`read_outgoing`, with the deliveries themselves) and the feed's
pages (`read_sources`) both read through here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from tracker.core.records import Delivery, EventType, Subscription
from tracker.store import codec, keys


@dataclass(frozen=True)
class Sources:
    subscriptions: dict[str, Subscription | None]
    # tracking id -> its stored result, final answer (own key) and snapshot (hash)
    finals: dict[str, tuple[bytes | None, bytes | None, bytes | None]]

    def body(
        self, event_type: EventType, made_at: float, subscription_id: str, tracking_id: str
    ) -> bytes | None:
        """The final event's body, built again; None if its subscription or task is gone."""
        sub = self.subscriptions.get(subscription_id)
        if sub is None or tracking_id not in self.finals:
            return None
        return codec.final_body(event_type, made_at, sub, *self.finals[tracking_id])


async def read_sources(
    redis: Redis, space: keys.Keyspace, subscription_ids: Iterable[str], tracking_ids: Iterable[str]
) -> Sources:
    """The subscriptions, and the tasks' results and final answers, in one round trip."""
    subs, tasks = list(dict.fromkeys(subscription_ids)), list(dict.fromkeys(tracking_ids))
    async with redis.pipeline(transaction=False) as pipe:
        for subscription_id in subs:
            pipe.hgetall(space.subscription(subscription_id))
        for tracking_id in tasks:
            pipe.hmget(space.task(tracking_id), "result", "snapshot")
            pipe.get(space.task_answer(tracking_id))
        raws = await pipe.execute()
    found = raws[len(subs) :]  # per task: [result, snapshot], then its answer
    finals = {
        tracking_id: (found[2 * i][0], found[2 * i + 1], found[2 * i][1])
        for i, tracking_id in enumerate(tasks)
    }
    return Sources(
        subscriptions={
            subscription_id: codec.subscription(subscription_id, codec.text(raw)) if raw else None
            for subscription_id, raw in zip(subs, raws, strict=False)
        },
        finals=finals,
    )


async def read_outgoing(
    script: AsyncScript, space: keys.Keyspace, delivery_ids: Sequence[str]
) -> tuple[dict[str, Delivery | None], Sources]:
    """The deliveries (None: gone, or not a whole record), and what their bodies are built
    from, in one call of `scripts.READ_OUTGOING` however many there are."""
    templates = [
        space.delivery("%s"), space.subscription("%s"), space.task("%s"), space.task_answer("%s"),
        space.delivery_body("%s"),
    ]  # fmt: skip
    replies: list[list[Any]] = await script(args=[*templates, *delivery_ids])
    deliveries: dict[str, Delivery | None] = {}
    subscriptions: dict[str, Subscription | None] = {}
    finals: dict[str, tuple[bytes | None, bytes | None, bytes | None]] = {}
    for delivery_id, (fields, sub, result, snapshot, answer, body) in zip(
        delivery_ids, replies, strict=True
    ):
        raw = _pairs(fields)
        if body is not None:  # a pending final event's, kept for its attempts
            raw[b"body"] = body
        delivery = codec.maybe_delivery(delivery_id, raw)
        deliveries[delivery_id] = delivery
        if delivery is None:
            continue
        subscriptions[delivery.subscription_id] = (
            codec.subscription(delivery.subscription_id, codec.text(_pairs(sub))) if sub else None
        )
        if delivery.source and body is None:
            finals[delivery.source] = (result, answer, snapshot)
    return deliveries, Sources(subscriptions, finals)


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    # A hash as a script returns it: field, value, field, value, …
    return dict(zip(flat[::2], flat[1::2], strict=True))
