"""Redis, the one source of truth: clients, tasks, subscriptions, deliveries and attempts.

Every change that must not be half-made is one MULTI/EXEC, guarded by WATCH where it depends on
what it read; arq jobs are only wake-up calls on top of these records.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from tracker import credentials, keys
from tracker.clients import Clients
from tracker.domain import (
    EVENT_FOR_STATE,
    Attempt,
    Delivery,
    DeliveryState,
    EventType,
    Result,
    Subscription,
    SubscriptionState,
    Task,
    TaskState,
)
from tracker.estimates import SAMPLE_LIMIT
from tracker.events import event_body, event_id
from tracker.polling import model_of
from tracker.upstream import summary

T = TypeVar("T")


@dataclass(frozen=True)
class Registration:
    subscription: Subscription
    created: bool
    deliveries: tuple[Delivery, ...]  # to enqueue at once: the task had already ended


@dataclass(frozen=True)
class SubscriptionView:
    subscription: Subscription
    deliveries: tuple[tuple[Delivery, tuple[Attempt, ...]], ...]


DEFAULT_RETENTION = 7 * 86400.0

# Record a poll that changed nothing but times and counts, in one round trip, and only while
# the task is still tracked (a cancelled or ended task is never brought back).
_TOUCH_TASK = """
if redis.call('HGET', KEYS[1], 'state') ~= 'tracking' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""


# Claim up to ARGV[2] tasks due by ARGV[1]: each is leased by pushing its due time to ARGV[3],
# so no other worker claims it meanwhile, and a crashed worker's claims come due again. Also
# answers when the next task is due, so an idle poller sleeps just that long.
_CLAIM_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, task_id in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[3], task_id) end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {due, first[2] or false}
"""


# Drop a task from the due set unless it is tracked (again): a task cancelled and registered
# anew while a poller held its stale record must stay due.
_FORGET_DUE = """
if redis.call('HGET', KEYS[1], 'state') == 'tracking' then return 0 end
return redis.call('ZREM', KEYS[2], ARGV[1])
"""


class Store:
    """Typed access to the tracker's records in Redis.

    Records of ended tasks expire: a delivery and its attempt log `retention` seconds after the
    delivery ends; a task, its subscriptions and their indexes `retention + delivery_window`
    after the task ends, so they outlive any delivery still on its schedule. Live records
    never expire.
    """

    def __init__(
        self, redis: Redis, *, retention: float = DEFAULT_RETENTION, delivery_window: float = 0.0
    ) -> None:
        self.redis = redis
        self.clients = Clients(redis)
        self._touch = redis.register_script(_TOUCH_TASK)
        self._claim = redis.register_script(_CLAIM_DUE)
        self._forget = redis.register_script(_FORGET_DUE)
        self.retention = max(1, round(retention))
        self.task_retention = max(1, round(retention + delivery_window))

    # -- registration ------------------------------------------------------------------------

    async def register(
        self,
        *,
        client_id: str,
        task_id: str,
        callback_url: str,
        metadata: dict[str, Any],
        events: Sequence[EventType],
        now: float,
        deadline_at: float,
        first_poll_at: float,
    ) -> Registration:
        """Subscribe `callback_url` to `task_id`, starting to track the task if nobody does.

        The same client, task and callback again returns the existing subscription.
        """
        task_key = keys.task(task_id)
        # The same task, client and callback always name the same subscription.
        sub_id = credentials.derived_id("sub", task_id, client_id, callback_url)

        async def attempt(pipe: Pipeline) -> Registration:
            await pipe.watch(task_key)
            task = _task(_text(await pipe.hgetall(task_key)))
            known = task.subscription_ids if task is not None else ()
            if sub_id in known:
                found = await self.subscription(sub_id)
                if found is not None and found.state is SubscriptionState.ACTIVE:
                    return Registration(found, created=False, deliveries=())
            subscription = Subscription(
                id=sub_id,
                task_id=task_id,
                client_id=client_id,
                callback_url=callback_url,
                metadata=metadata,
                events=tuple(events),
                state=SubscriptionState.ACTIVE,
                created_at=now,
            )
            ids = known if sub_id in known else (*known, sub_id)
            deliveries: tuple[Delivery, ...] = ()
            pipe.multi()
            ended = task is not None and task.state.is_final
            if task is None or task.state is TaskState.CANCELLED:
                _write_task(
                    pipe,
                    Task(
                        task_id=task_id,
                        state=TaskState.TRACKING,
                        created_at=now,
                        updated_at=now,
                        deadline_at=deadline_at,
                        next_poll_at=first_poll_at,
                        subscription_ids=ids,
                    ),
                )
                pipe.zadd(keys.DUE_TASKS, {task_id: first_poll_at})
            else:
                pipe.hset(task_key, "subs", " ".join(ids))
                if ended and task.result is not None:
                    deliveries = _final_deliveries(task.result, task.snapshot, [subscription], now)
            _write_subscription(pipe, subscription)
            pipe.zadd(keys.client_tasks(client_id), {task_id: now}, nx=True)
            _write_deliveries(pipe, deliveries)
            record_keys = _task_record_keys(task_id, subscription.id)
            if ended:
                for key in record_keys:
                    pipe.expire(key, self.task_retention)
            else:
                for key in record_keys:
                    pipe.persist(key)  # a cancelled task tracked again is live again
            await pipe.execute()
            return Registration(subscription, True, deliveries)

        return await self._transaction(attempt)

    async def cancel(self, client_id: str, task_id: str, now: float) -> bool:
        """Stop `client_id`'s subscriptions to `task_id`; stop polling if none is left.

        Returns False when the client had no active subscription to it.
        """
        task_key = keys.task(task_id)

        async def attempt(pipe: Pipeline) -> bool:
            await pipe.watch(task_key)
            subscriptions = await self._subscriptions(task_id, pipe)
            active = [s for s in subscriptions if s.state is SubscriptionState.ACTIVE]
            mine = [s for s in active if s.client_id == client_id]
            if not mine:
                return False
            task = _task(_text(await pipe.hgetall(task_key)))
            pipe.multi()
            for sub in mine:
                pipe.hset(keys.subscription(sub.id), "state", SubscriptionState.CANCELLED.value)
            if len(mine) == len(active) and task is not None and task.state is TaskState.TRACKING:
                pipe.hset(
                    task_key,
                    mapping={"state": TaskState.CANCELLED.value, "updated_at": repr(now)},
                )
                pipe.zrem(keys.DUE_TASKS, task_id)
                for key in _task_record_keys(task_id, *(s.id for s in subscriptions)):
                    pipe.expire(key, self.task_retention)
            await pipe.execute()
            return True

        return await self._transaction(attempt)

    # -- polling ---------------------------------------------------------------------------

    async def claim_due(
        self, now: float, limit: int, lease_until: float
    ) -> tuple[list[str], float | None]:
        """Lease up to `limit` tasks whose poll is due: only this caller polls them now.

        Also returns when the next task (claimed ones included) is due, None if none is.
        """
        claimed, first = await self._claim(keys=[keys.DUE_TASKS], args=[now, limit, lease_until])
        return [task_id.decode() for task_id in claimed], float(first) if first else None

    async def reschedule(self, task_id: str, at: float) -> None:
        """Move a claimed task's next poll to `at` (never re-adding one that ended meanwhile)."""
        await self.redis.zadd(keys.DUE_TASKS, {task_id: at}, xx=True)

    async def forget_due(self, task_id: str) -> None:
        """Stop polling a task that is not tracked (ended, cancelled, expired)."""
        await self._forget(keys=[keys.task(task_id), keys.DUE_TASKS], args=[task_id])

    async def tasks(self, task_ids: Sequence[str]) -> list[Task | None]:
        """Several task records in one round trip."""
        if not task_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.hgetall(keys.task(task_id))
            found = await pipe.execute()
        return [_task(_text(raw)) for raw in found]

    async def task(self, task_id: str) -> Task | None:
        return _task(_text(await self.redis.hgetall(keys.task(task_id))))

    async def record_poll(
        self,
        task_id: str,
        *,
        polls: int,
        rejections: int,
        status: str | None,
        previous_status: str | None,
        snapshot: dict[str, Any] | None,
        next_poll_at: float,
        now: float,
        origin: float | None = None,
        history: Sequence[tuple[str, float]] = (),
    ) -> tuple[Delivery, ...]:
        """Record a poll that did not end the task (nothing, if it stopped meanwhile).

        Returns the `video.status_changed` deliveries made when the upstream's status word
        changed. Most polls change nothing but times and counts: those take one round trip.
        """
        fields = {
            "polls": str(polls),
            "rejections": str(rejections),
            "next_poll_at": repr(next_poll_at),
            "updated_at": repr(now),
        }
        if snapshot is not None:
            fields["snapshot"] = json.dumps(summary(snapshot))  # the final answer is kept whole
        if origin is not None:
            fields["origin"] = repr(origin)
        if status is None or status == previous_status:
            await self._touch(
                keys=[keys.task(task_id), keys.DUE_TASKS],
                args=[task_id, repr(next_poll_at), *(x for kv in fields.items() for x in kv)],
            )
            return ()
        fields["upstream_status"] = status
        fields["history"] = json.dumps(list(history))
        task_key = keys.task(task_id)

        async def attempt(pipe: Pipeline) -> tuple[Delivery, ...]:
            await pipe.watch(task_key)
            state = await pipe.hget(task_key, "state")
            if state is None or state.decode() != TaskState.TRACKING:
                return ()
            subscriptions = await self._subscriptions(task_id, pipe)
            deliveries = _status_deliveries(task_id, status, polls, snapshot, subscriptions, now)
            pipe.multi()
            pipe.hset(task_key, mapping=fields)
            pipe.zadd(keys.DUE_TASKS, {task_id: next_poll_at})
            _write_deliveries(pipe, deliveries)
            await pipe.execute()
            return deliveries

        return await self._transaction(attempt)

    async def finish(
        self,
        task_id: str,
        *,
        result: Result,
        snapshot: dict[str, Any] | None,
        polls: int,
        now: float,
    ) -> tuple[Delivery, ...]:
        """End a tracked task and create its deliveries, in one transaction.

        Only a task still tracking can end, so an outcome yields its events once.
        """
        task_key = keys.task(task_id)

        async def attempt(pipe: Pipeline) -> tuple[Delivery, ...]:
            await pipe.watch(task_key)
            task = _task(_text(await pipe.hgetall(task_key)))
            if task is None or task.state is not TaskState.TRACKING:
                return ()
            final_snapshot = snapshot if snapshot is not None else task.snapshot
            subscriptions = await self._subscriptions(task_id, pipe)
            deliveries = _final_deliveries(result, final_snapshot, subscriptions, now)
            pipe.multi()
            fields = {
                "state": result.state.value,
                "result": json.dumps(_result_fields(result)),
                "polls": str(polls),
                "updated_at": repr(now),
            }
            if result.status is not None:
                fields["upstream_status"] = result.status
            if final_snapshot is not None:
                fields["snapshot"] = json.dumps(final_snapshot)
            pipe.hset(task_key, mapping=fields)
            pipe.zrem(keys.DUE_TASKS, task_id)
            _write_deliveries(pipe, deliveries)
            for key in _task_record_keys(task_id, *(s.id for s in subscriptions)):
                pipe.expire(key, self.task_retention)
            await pipe.execute()
            return deliveries

        return await self._transaction(attempt)

    # -- subscriptions and deliveries ------------------------------------------------------------

    async def subscription(self, subscription_id: str) -> Subscription | None:
        raw = _text(await self.redis.hgetall(keys.subscription(subscription_id)))
        return _subscription(subscription_id, raw) if raw else None

    async def subscriptions(self, task_id: str) -> list[Subscription]:
        return await self._subscriptions(task_id, self.redis)

    async def _subscriptions(self, task_id: str, conn: Redis | Pipeline) -> list[Subscription]:
        raw = await conn.hget(keys.task(task_id), "subs")
        ids = raw.decode().split() if raw else []
        found = []
        for subscription_id in ids:
            raw = _text(await conn.hgetall(keys.subscription(subscription_id)))
            if raw:
                found.append(_subscription(subscription_id, raw))
        return sorted(found, key=lambda s: s.created_at)

    async def delivery(self, delivery_id: str) -> Delivery | None:
        raw = await self.redis.hgetall(keys.delivery(delivery_id))
        return _delivery(delivery_id, raw) if raw else None

    async def record_attempt(
        self,
        delivery_id: str,
        attempt: Attempt,
        *,
        state: DeliveryState,
        next_attempt_at: float | None,
        disable_subscription: str | None = None,
    ) -> None:
        """Append an attempt to the log and move the delivery on, in one transaction.

        `disable_subscription` (after a 410) is disabled in the same transaction.
        """
        async with self.redis.pipeline(transaction=True) as pipe:
            if disable_subscription is not None:
                pipe.hset(
                    keys.subscription(disable_subscription),
                    "state",
                    SubscriptionState.DISABLED.value,
                )
            pipe.rpush(keys.delivery_attempts(delivery_id), json.dumps(_attempt_fields(attempt)))
            pipe.hincrby(keys.delivery(delivery_id), "attempts", 1)
            fields = {"state": state.value}
            if next_attempt_at is not None:
                fields["next_attempt_at"] = repr(next_attempt_at)
                pipe.zadd(keys.DUE_DELIVERIES, {delivery_id: next_attempt_at})
            else:
                pipe.zrem(keys.DUE_DELIVERIES, delivery_id)
            pipe.hset(keys.delivery(delivery_id), mapping=fields)
            if state is not DeliveryState.PENDING:
                self._expire_delivery(pipe, delivery_id)
            await pipe.execute()

    async def skip_delivery(self, delivery_id: str) -> None:
        """Close a delivery whose subscription is gone, without an attempt."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.delivery(delivery_id), "state", DeliveryState.SKIPPED.value)
            pipe.zrem(keys.DUE_DELIVERIES, delivery_id)
            self._expire_delivery(pipe, delivery_id)
            await pipe.execute()

    def _expire_delivery(self, pipe: Pipeline, delivery_id: str) -> None:
        pipe.expire(keys.delivery(delivery_id), self.retention)
        pipe.expire(keys.delivery_attempts(delivery_id), self.retention)

    async def attempts(self, delivery_id: str) -> tuple[Attempt, ...]:
        raw = await self.redis.lrange(keys.delivery_attempts(delivery_id), 0, -1)
        return tuple(Attempt(**json.loads(item)) for item in raw)

    async def subscription_views(self, task_id: str, client_id: str) -> list[SubscriptionView]:
        """The client's subscriptions to a task, each with its deliveries and their attempts."""
        views = []
        for sub in await self.subscriptions(task_id):
            if sub.client_id != client_id:
                continue
            ids = await self.redis.lrange(keys.subscription_deliveries(sub.id), 0, -1)
            deliveries = []
            for raw_id in ids:
                found = await self.delivery(raw_id.decode())
                if found is not None:
                    deliveries.append((found, await self.attempts(found.id)))
            views.append(SubscriptionView(sub, tuple(deliveries)))
        return views

    async def list_tasks(
        self, client_id: str, *, before: float | None, limit: int, state: TaskState | None
    ) -> tuple[list[tuple[Task, float]], float | None]:
        """The client's tasks, newest registration first, each with its registration time.

        `before` is the cursor: only tasks registered strictly earlier. Returns the page and
        the cursor of the next page (None at the end).
        """
        found: list[tuple[Task, float]] = []
        upper: float | str = "+inf" if before is None else f"({before!r}"
        while len(found) < limit:
            batch = await self.redis.zrevrangebyscore(
                keys.client_tasks(client_id), upper, "-inf", start=0, num=limit * 2,
                withscores=True,
            )  # fmt: skip
            if not batch:
                return found, None
            for member, score in batch:
                task = await self.task(member.decode())
                if task is None:  # expired with its retention: forget it here too
                    await self.redis.zrem(keys.client_tasks(client_id), member)
                    continue
                if state is None or task.state is state:
                    found.append((task, score))
                    if len(found) == limit:
                        return found, score
            upper = f"({batch[-1][1]!r}"
        return found, None

    async def redeliver(self, client_id: str, task_id: str, now: float) -> list[Delivery]:
        """Send the final event of an ended task again to the client's subscriptions.

        Each delivery keeps its `webhook-id` and starts a new attempt log; a subscription that
        a 410 disabled is enabled again, since its owner asked.
        """
        task = await self.task(task_id)
        if task is None or not task.state.is_final:
            return []
        event_type = EVENT_FOR_STATE[task.state]
        again = []
        for sub in await self.subscriptions(task_id):
            if sub.client_id != client_id or sub.state is SubscriptionState.CANCELLED:
                continue
            delivery_id = event_id(sub.id, event_type)
            found = await self.delivery(delivery_id)
            if found is None:
                continue
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(keys.subscription(sub.id), "state", SubscriptionState.ACTIVE.value)
                pipe.delete(keys.delivery_attempts(delivery_id))
                pipe.hset(
                    keys.delivery(delivery_id),
                    mapping={
                        "state": DeliveryState.PENDING.value,
                        "attempts": "0",
                        "next_attempt_at": repr(now),
                    },
                )
                pipe.zadd(keys.DUE_DELIVERIES, {delivery_id: now})
                pipe.persist(keys.delivery(delivery_id))  # pending again: live
                for key in _task_record_keys(task_id, sub.id):
                    pipe.expire(key, self.task_retention)
                await pipe.execute()
            again.append(replace(found, state=DeliveryState.PENDING, attempts=0))
        return again

    # -- learning --------------------------------------------------------------------------

    async def learn(self, model: str, samples: Sequence[tuple[str, float]]) -> None:
        """Keep what one completed task of `model` teaches (the latest few hundred)."""
        if not samples:
            return
        key = keys.learned(model)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lpush(key, json.dumps(dict(samples)))
            pipe.ltrim(key, 0, SAMPLE_LIMIT - 1)
            await pipe.execute()

    async def learned(self, model: str) -> dict[str, list[float]]:
        """Every sample kept for `model`, by status (and `_total`)."""
        found: dict[str, list[float]] = {}
        for raw in await self.redis.lrange(keys.learned(model), 0, SAMPLE_LIMIT - 1):
            for name, value in json.loads(raw).items():
                found.setdefault(name, []).append(float(value))
        return found

    # -- sweeping ----------------------------------------------------------------------------

    async def overdue_deliveries(self, before: float, limit: int) -> list[str]:
        return await self._overdue(keys.DUE_DELIVERIES, before, limit)

    async def _overdue(self, key: str, before: float, limit: int) -> list[str]:
        members = await self.redis.zrangebyscore(key, "-inf", before, start=0, num=limit)
        return [m.decode() for m in members]

    async def _transaction(self, attempt: Callable[[Pipeline], Awaitable[T]]) -> T:
        """Run a WATCH/MULTI attempt until no watched key changed under it."""
        while True:
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    return await attempt(pipe)
                except WatchError:
                    continue


# -- encoding ------------------------------------------------------------------------------------


def _text(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


def _task_record_keys(task_id: str, *subscription_ids: str) -> list[str]:
    """The keys that live and expire with a task: its own, and its subscriptions'."""
    found = [keys.task(task_id)]
    for subscription_id in subscription_ids:
        found += [keys.subscription(subscription_id), keys.subscription_deliveries(subscription_id)]
    return found


def _write_task(pipe: Pipeline, task: Task) -> None:
    pipe.delete(keys.task(task.task_id))
    pipe.hset(
        keys.task(task.task_id),
        mapping={
            "task_id": task.task_id,
            "state": task.state.value,
            "created_at": repr(task.created_at),
            "updated_at": repr(task.updated_at),
            "deadline_at": repr(task.deadline_at),
            "next_poll_at": repr(task.next_poll_at),
            "polls": str(task.polls),
            "rejections": str(task.rejections),
            "subs": " ".join(task.subscription_ids),
        },
    )


def _task(raw: dict[str, str]) -> Task | None:
    if not raw:
        return None
    return Task(
        task_id=raw["task_id"],
        state=TaskState(raw["state"]),
        created_at=float(raw["created_at"]),
        updated_at=float(raw["updated_at"]),
        deadline_at=float(raw["deadline_at"]),
        next_poll_at=float(raw["next_poll_at"]),
        polls=int(raw.get("polls", "0")),
        rejections=int(raw.get("rejections", "0")),
        upstream_status=raw.get("upstream_status"),
        snapshot=json.loads(raw["snapshot"]) if "snapshot" in raw else None,
        result=_result(json.loads(raw["result"])) if "result" in raw else None,
        origin=float(raw["origin"]) if "origin" in raw else None,
        history=tuple((s, float(t)) for s, t in json.loads(raw.get("history", "[]"))),
        subscription_ids=tuple(raw.get("subs", "").split()),
    )


def _result_fields(result: Result) -> dict[str, Any]:
    return {**dataclasses.asdict(result), "state": result.state.value}


def _result(fields: dict[str, Any]) -> Result:
    return Result(**{**fields, "state": TaskState(fields["state"])})


def _write_subscription(pipe: Pipeline, sub: Subscription) -> None:
    pipe.hset(
        keys.subscription(sub.id),
        mapping={
            "task_id": sub.task_id,
            "client_id": sub.client_id,
            "callback_url": sub.callback_url,
            "metadata": json.dumps(sub.metadata),
            "events": json.dumps([e.value for e in sub.events]),
            "state": sub.state.value,
            "created_at": repr(sub.created_at),
        },
    )


def _subscription(subscription_id: str, raw: dict[str, str]) -> Subscription:
    return Subscription(
        id=subscription_id,
        task_id=raw["task_id"],
        client_id=raw["client_id"],
        callback_url=raw["callback_url"],
        metadata=json.loads(raw["metadata"]),
        events=tuple(EventType(e) for e in json.loads(raw["events"])),
        state=SubscriptionState(raw["state"]),
        created_at=float(raw["created_at"]),
    )


def _final_deliveries(
    result: Result,
    snapshot: dict[str, Any] | None,
    subscriptions: Iterable[Subscription],
    now: float,
) -> tuple[Delivery, ...]:
    event_type = EVENT_FOR_STATE[result.state]
    return tuple(
        _delivery_for(sub, event_type, result, snapshot, now)
        for sub in subscriptions
        if sub.state is SubscriptionState.ACTIVE and event_type in sub.events
    )


def _status_deliveries(
    task_id: str,
    status: str,
    polls: int,
    snapshot: dict[str, Any] | None,
    subscriptions: Iterable[Subscription],
    now: float,
) -> tuple[Delivery, ...]:
    """`video.status_changed` deliveries, for the subscriptions that asked for them."""
    result = Result(state=TaskState.TRACKING, status=status, model=model_of(task_id))
    wanted = [
        s
        for s in subscriptions
        if s.state is SubscriptionState.ACTIVE and EventType.STATUS_CHANGED in s.events
    ]
    return tuple(
        _delivery_for(sub, EventType.STATUS_CHANGED, result, snapshot, now, f"{polls}:{status}")
        for sub in wanted
    )


def _delivery_for(
    sub: Subscription,
    event_type: EventType,
    result: Result,
    snapshot: dict[str, Any] | None,
    now: float,
    discriminator: str = "",
) -> Delivery:
    body = event_body(
        event_type, task_id=sub.task_id, result=result, subscription=sub, upstream=snapshot, at=now
    )
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
    )


def _write_deliveries(pipe: Pipeline, deliveries: Iterable[Delivery]) -> None:
    for d in deliveries:
        pipe.hset(
            keys.delivery(d.id),
            mapping={
                "subscription_id": d.subscription_id,
                "task_id": d.task_id,
                "event_type": d.event_type.value,
                "body": d.body,
                "state": d.state.value,
                "attempts": str(d.attempts),
                "next_attempt_at": repr(d.next_attempt_at),
                "created_at": repr(d.created_at),
            },
        )
        pipe.rpush(keys.subscription_deliveries(d.subscription_id), d.id)
        pipe.zadd(keys.DUE_DELIVERIES, {d.id: d.next_attempt_at})


def _delivery(delivery_id: str, raw: dict[bytes, bytes]) -> Delivery:
    text = {k.decode(): v for k, v in raw.items()}
    return Delivery(
        id=delivery_id,
        subscription_id=text["subscription_id"].decode(),
        task_id=text["task_id"].decode(),
        event_type=EventType(text["event_type"].decode()),
        body=text["body"],
        state=DeliveryState(text["state"].decode()),
        attempts=int(text["attempts"]),
        next_attempt_at=float(text["next_attempt_at"]),
        created_at=float(text["created_at"]),
    )


def _attempt_fields(attempt: Attempt) -> dict[str, Any]:
    return dataclasses.asdict(attempt)
