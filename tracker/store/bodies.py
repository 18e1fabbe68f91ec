"""What final events' bodies are built from, read for many events in one round trip: their
subscriptions, and their tasks' stored results and final answers (see `Delivery.source`).
The dispatcher's batches and the feed's pages both read through here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from redis.asyncio import Redis

from tracker.core.records import EventType, Subscription
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
    redis: Redis, subscription_ids: Iterable[str], tracking_ids: Iterable[str]
) -> Sources:
    """The subscriptions, and the tasks' results and final answers, in one round trip."""
    subs, tasks = list(dict.fromkeys(subscription_ids)), list(dict.fromkeys(tracking_ids))
    async with redis.pipeline(transaction=False) as pipe:
        for subscription_id in subs:
            pipe.hgetall(keys.subscription(subscription_id))
        for tracking_id in tasks:
            pipe.hmget(keys.task(tracking_id), "result", "snapshot")
            pipe.get(keys.task_answer(tracking_id))
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
