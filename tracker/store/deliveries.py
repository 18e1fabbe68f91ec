"""Deliveries and their attempt logs: created with their task's change, moved on by attempts.

An ended delivery and its attempt log expire `retention` seconds after the delivery ends; a
pending one never does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from tracker.core import operations
from tracker.core.events import event_id
from tracker.core.origins import origin_key
from tracker.core.records import (
    EVENT_FOR_STATE,
    OPERATIONAL_EVENTS,
    Attempt,
    Delivery,
    DeliveryState,
    Subscription,
    SubscriptionState,
    Task,
)
from tracker.store import codec, keys, scripts
from tracker.store.feed import FeedPolicy, stage_events


@dataclass(frozen=True)
class SubscriptionView:
    """One subscription with its deliveries, each with its attempts, as the API shows it."""

    subscription: Subscription
    deliveries: tuple[tuple[Delivery, tuple[Attempt, ...]], ...]


def stage_new(
    pipe: Pipeline,
    space: keys.Keyspace,
    events: Iterable[Delivery],
    *,
    seq: int,
    now: float,
    feed: FeedPolicy,
) -> None:
    """Queue into a transaction the writes that make new events: each goes to its client's
    feed (`tracker.store.feed`), and becomes a delivery, due at once, when its subscription
    has a callback (a subscription without one follows the feed only).

    A delivery id can come back (a subscription a 410 disabled, registered again): its old
    record and attempt log go, with their expiry, and it starts pending and live.
    """
    events = tuple(events)
    stage_events(pipe, space, events, seq, now, feed)
    for d in events:
        if not d.origin:  # no callback: nothing to send
            continue
        pipe.delete(space.delivery(d.id), space.delivery_attempts(d.id), space.delivery_body(d.id))
        pipe.hset(space.delivery(d.id), mapping=codec.delivery_fields(d))
        if d.source:  # kept for its attempts until it ends (`scripts.RECORD_ATTEMPT`)
            pipe.set(space.delivery_body(d.id), d.body)
        pipe.lrem(space.subscription_deliveries(d.subscription_id), 0, d.id)
        pipe.rpush(space.subscription_deliveries(d.subscription_id), d.id)
        pipe.zadd(space.DUE_DELIVERIES, {d.id: d.next_attempt_at})
        pipe.zadd(space.origin_waiting(origin_key(d.client_id, d.origin)), {d.id: d.created_at})


# The key of a destination's waiting set, for the scripts to fill in from a delivery's hash.
def _exhausted_member(delivery: Delivery) -> str:
    """The outbox note a delivery leaves should it end dead (`tracker.core.operations`); an
    operational event's own delivery leaves none."""
    if delivery.event_type in OPERATIONAL_EVENTS:
        return ""
    return operations.exhausted_note(delivery.client_id, delivery.id, delivery.round).member


class Deliveries:
    """Deliveries, their attempt logs, and the due set their senders claim from."""

    def __init__(
        self, redis: Redis, space: keys.Keyspace, *, retention: int, task_retention: int
    ) -> None:
        self.redis = redis
        self.keys = space
        self.retention = retention
        self.task_retention = task_retention
        self._claim = redis.register_script(scripts.CLAIM_DELIVERIES)
        self._forget = redis.register_script(scripts.FORGET_DELIVERY)
        self._record = redis.register_script(scripts.RECORD_ATTEMPT)
        self._skip = redis.register_script(scripts.SKIP_DELIVERY)
        self._postpone = redis.register_script(scripts.POSTPONE_DELIVERY)

    async def claim_due(
        self,
        now: float,
        limit: int,
        lease_until: float,
        *,
        slots: int,
        scan: int,
        window: float,
        per_client: int,
    ) -> tuple[list[tuple[str, str]], float | None]:
        """Lease up to `limit` deliveries that can go now, clients taking turns, each with a
        slot of its origin (of `slots`) and of its client (of `per_client`): only this caller
        sends them until the lease ends. Looks at `scan` due entries at most; those whose
        origin is open or busy, or whose client is busy, are put off, never past their
        `window` (see `scripts.CLAIM_DELIVERIES`).

        Returns (delivery id, how it was claimed: `slot`, `probe` or `plain`) pairs, and when
        the next delivery is due (None if none is).
        """
        ids, kinds, first = await self._claim(
            keys=[self.keys.DUE_DELIVERIES],
            args=[
                repr(now), limit, repr(lease_until), slots, scan, repr(scripts.CLAIM_PASS_OVER),
                self.keys.delivery("%s"), self.keys.origin_inflight("%s"),
                self.keys.origin_breaker("%s"), repr(window), per_client,
                self.keys.client_sending("%s"),
            ],
        )  # fmt: skip
        claimed = [(i.decode(), k.decode()) for i, k in zip(ids, kinds, strict=True)]
        return claimed, float(first) if first else None

    async def forget_due(self, delivery_id: str) -> None:
        """Stop waking a delivery that is not pending (ended, expired, or never written)."""
        await self._forget(
            keys=[
                self.keys.delivery(delivery_id),
                self.keys.DUE_DELIVERIES,
                self.keys.delivery_body(delivery_id),
            ],
            args=[delivery_id, self.keys.origin_waiting("%s")],
        )

    async def get(self, delivery_id: str) -> Delivery | None:
        raw = await self.redis.hgetall(self.keys.delivery(delivery_id))
        return codec.delivery(delivery_id, raw) if raw else None

    async def attempts(self, delivery_id: str) -> tuple[Attempt, ...]:
        raw = await self.redis.lrange(self.keys.delivery_attempts(delivery_id), 0, -1)
        return tuple(codec.attempt(item) for item in raw)

    async def record_attempt(
        self,
        delivery: Delivery,
        attempt: Attempt,
        *,
        state: DeliveryState,
        next_attempt_at: float | None,
        disable_subscription: bool = False,
    ) -> bool:
        """Append an attempt to the log and move the delivery on, in one step, if `delivery`
        (as its sender read it) is still what Redis holds: pending, at the same attempt number
        and round. False when it moved on meanwhile; then nothing is written.

        `disable_subscription` (after a 410) disables its subscription in the same step.
        """
        script_keys, args = self.record_call(
            delivery, attempt, state, next_attempt_at, disable_subscription
        )
        return bool(await self._record(keys=script_keys, args=args))

    def record_call(
        self,
        delivery: Delivery,
        attempt: Attempt,
        state: DeliveryState,
        next_attempt_at: float | None,
        disable_subscription: bool,
    ) -> tuple[list[str], list[str | int]]:
        """RECORD_ATTEMPT's KEYS and ARGV (`record_attempt`, and `Store.conclude_attempt`)."""
        return (
            [
                self.keys.delivery(delivery.id), self.keys.delivery_attempts(delivery.id),
                self.keys.DUE_DELIVERIES, self.keys.subscription(delivery.subscription_id),
                self.keys.delivery_body(delivery.id), self.keys.OPERATIONS,
            ],
            [
                delivery.id, delivery.attempts, delivery.round, codec.attempt_json(attempt),
                state.value, "" if next_attempt_at is None else repr(next_attempt_at),
                self.retention, 1 if disable_subscription else 0,
                _exhausted_member(delivery), repr(attempt.at), self.keys.origin_waiting("%s"),
            ],
        )  # fmt: skip

    async def skip(self, delivery_id: str) -> None:
        """Close a delivery whose subscription is gone, without an attempt (if pending)."""
        await self._skip(
            keys=[
                self.keys.delivery(delivery_id), self.keys.delivery_attempts(delivery_id),
                self.keys.DUE_DELIVERIES, self.keys.delivery_body(delivery_id),
            ],
            args=[delivery_id, self.retention, self.keys.origin_waiting("%s")],
        )  # fmt: skip

    def _expire(self, pipe: Pipeline, delivery_id: str) -> None:
        pipe.expire(self.keys.delivery(delivery_id), self.retention)
        pipe.expire(self.keys.delivery_attempts(delivery_id), self.retention)

    async def webhook_troubles(self, client_id: str, tasks: Sequence[Task]) -> dict[str, str]:
        """For each ended task of `tasks` whose final webhook to `client_id` is in trouble,
        which: `dead`, `gone`, or `failing` (pending after a refused attempt); two round trips
        for a page of tasks (the dashboard's list, so a green "completed" never hides it)."""
        ended = [t for t in tasks if t.state.is_final and t.subscription_ids]
        async with self.redis.pipeline(transaction=False) as pipe:
            for task in ended:
                for sub_id in task.subscription_ids:
                    pipe.hmget(self.keys.subscription(sub_id), "client_id", "callback_url")
            owners = iter(await pipe.execute())
        finals: list[tuple[str, str]] = []  # (tracking id, delivery id)
        for task in ended:
            for sub_id in task.subscription_ids:
                owner, url = next(owners)
                if owner is not None and owner.decode() == client_id and url:
                    finals.append((task.tracking_id, event_id(sub_id, EVENT_FOR_STATE[task.state])))
        async with self.redis.pipeline(transaction=False) as pipe:
            for _, delivery_id in finals:
                pipe.hmget(self.keys.delivery(delivery_id), "state", "attempts")
            states = await pipe.execute()
        troubles: dict[str, str] = {}
        for (tracking_id, _), (state, attempts) in zip(finals, states, strict=True):
            word = (state or b"").decode()
            if word == "pending" and int(attempts or 0) > 0:
                word = "failing"
            if word in {"dead", "gone", "failing"}:
                troubles[tracking_id] = word
        return troubles

    async def views(self, subscriptions: Sequence[Subscription]) -> list[SubscriptionView]:
        """Each subscription with its deliveries and their attempts: two round trips in all."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for sub in subscriptions:
                pipe.lrange(self.keys.subscription_deliveries(sub.id), 0, -1)
            id_lists: list[list[bytes]] = await pipe.execute()
        ids = [[raw.decode() for raw in found] for found in id_lists]
        async with self.redis.pipeline(transaction=False) as pipe:
            for delivery_id in (i for found in ids for i in found):
                pipe.hgetall(self.keys.delivery(delivery_id))
                pipe.lrange(self.keys.delivery_attempts(delivery_id), 0, -1)
            replies = iter(await pipe.execute())
        views = []
        for sub, delivery_ids in zip(subscriptions, ids, strict=True):
            deliveries = []
            for delivery_id in delivery_ids:
                raw, log = next(replies), next(replies)
                if raw:  # an expired delivery is no longer shown
                    found = codec.delivery(delivery_id, raw)
                    deliveries.append((found, tuple(codec.attempt(a) for a in log)))
            views.append(SubscriptionView(sub, tuple(deliveries)))
        return views

    async def with_last_attempt(
        self, delivery_ids: Sequence[str]
    ) -> list[tuple[Delivery, Attempt | None]]:
        """Each delivery still kept, with its last attempt, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for delivery_id in delivery_ids:
                pipe.hgetall(self.keys.delivery(delivery_id))
                pipe.lindex(self.keys.delivery_attempts(delivery_id), -1)
            replies = iter(await pipe.execute())
        found = []
        for delivery_id in delivery_ids:
            raw, last = next(replies), next(replies)
            delivery = codec.maybe_delivery(delivery_id, raw)
            if delivery is not None:
                found.append((delivery, codec.attempt(last) if last else None))
        return found

    async def redeliver(
        self, task: Task, subscriptions: Iterable[Subscription], now: float
    ) -> list[Delivery]:
        """Send the final event of the ended `task` again to `subscriptions`.

        Each delivery keeps its `webhook-id` and its earlier attempts, starts a new round (each
        attempt names its round), and is due at once, whatever it was doing (in backoff, in
        flight, delivered, dead); a subscription that a 410 disabled is enabled again, since
        its owner asked. Returns the deliveries as they were before.
        """
        if not task.state.is_final:
            return []
        event_type = EVENT_FOR_STATE[task.state]
        again = []
        for sub in subscriptions:
            if sub.state is SubscriptionState.CANCELLED:
                continue
            delivery_id = event_id(sub.id, event_type)
            found = await self.get(delivery_id)
            if found is None:
                continue
            await self.resend(found, task.tracking_id, now)
            again.append(found)  # as it was: the caller can say what each one was doing
        return again

    async def resend(self, found: Delivery, tracking_id: str, now: float) -> None:
        """Send one delivery again (its task tracked as `tracking_id`; empty for an
        operational event, which has none): a new round, due at once, whatever it was doing,
        its subscription enabled again (its owner asked); it and its task's records live as
        long as it is pending."""
        delivery_id = found.id
        okey = await self.redis.hget(self.keys.delivery(delivery_id), "origin_key")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self.keys.subscription(found.subscription_id),
                "state",
                SubscriptionState.ACTIVE.value,
            )
            # A new round: an attempt still in flight from the last one is not recorded over
            # it (see `scripts.RECORD_ATTEMPT`).
            pipe.hincrby(self.keys.delivery(delivery_id), "round", 1)
            pipe.hset(
                self.keys.delivery(delivery_id),
                mapping={
                    "state": DeliveryState.PENDING.value,
                    "attempts": "0",
                    "next_attempt_at": repr(now),
                    "created_at": repr(now),  # a new schedule, and a new time limit
                },
            )
            pipe.zadd(self.keys.DUE_DELIVERIES, {delivery_id: now})
            if okey is not None:
                pipe.zadd(self.keys.origin_waiting(okey.decode()), {delivery_id: now})
            pipe.persist(self.keys.delivery(delivery_id))  # pending again: live
            pipe.persist(self.keys.delivery_attempts(delivery_id))
            if tracking_id:
                for key in self.keys.task_record_keys(tracking_id, found.subscription_id):
                    pipe.expire(key, self.task_retention)
            await pipe.execute()

    async def due_now(self, delivery_ids: Sequence[str], now: float) -> None:
        """Make pending deliveries due at once (those still in the due set only)."""
        if delivery_ids:
            await self.redis.zadd(
                self.keys.DUE_DELIVERIES, dict.fromkeys(delivery_ids, now), xx=True
            )

    async def postpone(self, delivery_id: str, at: float) -> None:
        """Move a pending delivery's wake-up to `at` without an attempt (its origin is busy or
        open), so the sweeper does not take it for lost."""
        await self._postpone(
            keys=[self.keys.delivery(delivery_id), self.keys.DUE_DELIVERIES],
            args=[delivery_id, repr(at)],
        )
