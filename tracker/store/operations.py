"""Operational events in Redis: the outbox their notes wait in, each client's operational
subscription, and the announcement that turns a note into the event (`tracker.core.operations`
decides what each says)."""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import WatchError

from tracker.core import operations
from tracker.core.ids import new_id
from tracker.core.operations import Note
from tracker.core.origins import origin_key
from tracker.core.records import Delivery, EventType, Subscription, SubscriptionState
from tracker.store import codec, keys, scripts
from tracker.store.feed import FeedPolicy, entry_fields


class Operations:
    """The outbox, the operational subscriptions, and announcing."""

    def __init__(
        self, redis: Redis, space: keys.Keyspace, feed: FeedPolicy, retention: int
    ) -> None:
        self.redis = redis
        self.keys = space
        self.feed = feed
        self.retention = retention  # how long a removed subscription is kept for its deliveries
        self._announce = redis.register_script(scripts.ANNOUNCE)

    async def waiting(self, noted_by: float, limit: int) -> list[Note]:
        """The notes made by `noted_by` and not yet announced, oldest first (at most `limit`);
        one this code cannot read is dropped."""
        raw = await self.redis.zrangebyscore(self.keys.OPERATIONS, "-inf", noted_by, 0, limit)
        notes = []
        for member in raw:
            note = operations.parse(member.decode())
            if note is None:
                await self.redis.zrem(self.keys.OPERATIONS, member)
            else:
                notes.append(note)
        return notes

    async def drop(self, note: Note) -> None:
        """Forget a note that names nothing any more (its delivery expired)."""
        await self.redis.zrem(self.keys.OPERATIONS, note.member)

    async def announce(
        self, note: Note, event: Delivery, outgoing: Delivery | None, now: float
    ) -> bool:
        """Announce `note` as `event` in its client's feed, and as `outgoing` (a delivery to
        the client's operational subscription) if given: all or nothing, and only once
        (False: it had been)."""
        fields = [item for pair in entry_fields(event, 0).items() for item in pair]
        script_keys = [self.keys.OPERATIONS, self.keys.client_events(note.client_id)]
        args: list[str | bytes | int] = [
            note.member, self.feed.kept, self.feed.oldest(now), int(self.feed.retention),
            len(fields), *fields,
        ]  # fmt: skip
        if outgoing is not None:
            script_keys += [
                self.keys.delivery(outgoing.id),
                self.keys.subscription_deliveries(outgoing.subscription_id),
                self.keys.DUE_DELIVERIES,
                self.keys.origin_waiting(origin_key(outgoing.client_id, outgoing.origin)),
            ]
            delivery_fields = codec.delivery_fields(outgoing)
            args += [outgoing.id, repr(outgoing.next_attempt_at)]
            args += [item for pair in delivery_fields.items() for item in pair]
        return bool(await self._announce(keys=script_keys, args=args))

    async def subscription(self, client_id: str) -> Subscription | None:
        """The client's operational subscription, if it has one."""
        found = await self.redis.get(self.keys.client_operations(client_id))
        if found is None:
            return None
        subscription_id = found.decode()
        raw = codec.text(await self.redis.hgetall(self.keys.subscription(subscription_id)))
        return codec.subscription(subscription_id, raw) if raw else None

    async def subscribe(
        self, client_id: str, callback_url: str, events: Sequence[EventType], now: float
    ) -> Subscription:
        """Make (or replace) the client's operational subscription. A replaced one is
        cancelled, so its pending deliveries are skipped; the new one starts with no
        deliveries, at its own callback."""
        sub = Subscription(
            id=new_id("sub"),
            task_id="",
            client_id=client_id,
            callback_url=callback_url,
            metadata={},
            events=tuple(events),
            state=SubscriptionState.ACTIVE,
            created_at=now,
        )
        await self._swap(client_id, sub)
        return sub

    async def unsubscribe(self, client_id: str) -> bool:
        """Remove the client's operational subscription; False if it had none."""
        return await self._swap(client_id, None)

    async def _swap(self, client_id: str, new: Subscription | None) -> bool:
        """Point the client at `new` (None: at none) and cancel the one it replaces, in one
        transaction (compare-and-set on the pointer); whether there was one."""
        pointer = self.keys.client_operations(client_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(pointer)
                    old = await pipe.get(pointer)
                    pipe.multi()
                    if new is not None:
                        pipe.hset(
                            self.keys.subscription(new.id), mapping=codec.subscription_fields(new)
                        )
                        pipe.set(pointer, new.id)
                    else:
                        pipe.delete(pointer)
                    if old is not None:
                        # Kept a while for its deliveries' records, as a task's would be.
                        replaced = old.decode()
                        pipe.hset(
                            self.keys.subscription(replaced),
                            "state",
                            SubscriptionState.CANCELLED.value,
                        )
                        pipe.expire(self.keys.subscription(replaced), self.retention)
                        pipe.expire(self.keys.subscription_deliveries(replaced), self.retention)
                    await pipe.execute()
                    return old is not None
                except WatchError:
                    continue
