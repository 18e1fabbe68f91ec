"""Registering: a client's subscription to a task, starting to track the task if nobody
does; the task's records, its subscriptions and the client's indexes written in one
compare-and-set step (`scripts.REGISTER`), or, for a task that has ended, its final event
staged for the new subscription in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from tracker.core.events import final_deliveries
from tracker.core.ids import derived_id, tracking_id
from tracker.core.limits import Limits, live_tasks_refused, registration_refused
from tracker.core.records import EventType, Subscription, SubscriptionState, Task, TaskState
from tracker.core.storage import sources_of, wants_copies
from tracker.core.upstream_keys import DENIED
from tracker.errors import LimitReached
from tracker.store import codec, keys, scripts
from tracker.store.copies import CopyState, copy_id, stage_copies
from tracker.store.deliveries import stage_new
from tracker.store.owners import Owners
from tracker.store.tasks import Tasks
from tracker.store.transaction import transaction

DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Registration:
    subscription: Subscription
    created: bool


@dataclass(frozen=True)
class _Read:
    """What a registration decides on (`Tasks.register`): the task's hash as read (empty if
    none), its record, and the client's live tasks: how many, and whether this is one."""

    fields: dict[str, str]
    task: Task | None
    live_tasks: int
    is_live: bool


class Registrations:
    """Registrations to `tasks` (its records, its retention, its feed and copy policy)."""

    def __init__(self, redis: Redis, space: keys.Keyspace, tasks: Tasks, owners: Owners) -> None:
        self.redis = redis
        self.keys = space
        self.tasks = tasks
        self.owners = owners
        self._register = redis.register_script(scripts.REGISTER)

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
        limits: Limits = DEFAULT_LIMITS,
        upstream_key: str = "",
        shared_tasks: bool = True,
        keep_videos: bool = False,
        header_names: tuple[str, ...] = (),
        sealed_headers: str = "",
    ) -> Registration:
        """Subscribe `callback_url` to `task_id` as polled with `upstream_key` (the fingerprint
        of one of the client's keys; empty: the deployment's shared key), starting to track the
        task if nobody does.

        The same client, task and callback again returns the existing subscription. A new
        subscription past one of `limits` raises LimitReached, and nothing is written. Under
        the shared key a task belongs to the client that registered it first: unless
        `shared_tasks`, another client's registration goes to the DENIED scope
        (`tracker.core.upstream_keys`), where it ends as an unknown id would.
        """
        tid = tracking_id(task_id, upstream_key)
        subscription = Subscription(
            id=derived_id("sub", tid, client_id, callback_url), task_id=task_id,
            client_id=client_id, callback_url=callback_url, metadata=metadata,
            events=tuple(events), state=SubscriptionState.ACTIVE, created_at=now,
            keep_videos=keep_videos, header_names=header_names, sealed_headers=sealed_headers,
        )  # fmt: skip
        while True:
            read = await self._read(tid, client_id)
            if not shared_tasks and not upstream_key:
                ttl = deadline_at - now + self.tasks.task_retention
                if await self._owned_by_another(read, tid, client_id, ttl):
                    return await self.register(
                        client_id=client_id, task_id=task_id, callback_url=callback_url,
                        metadata=metadata, events=events, now=now, deadline_at=deadline_at,
                        first_poll_at=first_poll_at, limits=limits, upstream_key=DENIED,
                        keep_videos=keep_videos, header_names=header_names,
                        sealed_headers=sealed_headers,
                    )  # fmt: skip
            known = read.task.subscription_ids if read.task is not None else ()
            if subscription.id in known:
                found = await self.tasks.subscription(subscription.id)
                if found is not None and found.state is SubscriptionState.ACTIVE:
                    return Registration(found, created=False)
            await self._check_limits(read, subscription, limits)
            ids = known if subscription.id in known else (*known, subscription.id)
            if read.task is not None and read.task.state.is_final:
                # Rare: its final event is staged for the new subscription at once.
                done = await self._subscribe_to_ended(
                    read.task, tid, subscription, ids, read.fields, now
                )
            else:
                done = await self._commit(
                    read, tid, subscription, ids, limits=limits, now=now,
                    deadline_at=deadline_at, first_poll_at=first_poll_at,
                    upstream_key=upstream_key,
                )  # fmt: skip
            if done is not None:
                return done
            # The task changed since the read: read again.

    async def _read(self, tid: str, client_id: str) -> _Read:
        """The task as tracked now, and the client's live tasks: one read, for one
        compare-and-set script after it (no WATCH, so one client's concurrent registrations,
        which share its live-task set, never make each other start over)."""
        live_key = self.keys.client_live_tasks(client_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.task(tid))
            pipe.scard(live_key)
            pipe.sismember(live_key, tid)
            raw, live_tasks, is_live = await pipe.execute()
        fields = codec.text(raw)
        return _Read(fields, codec.task(fields), int(live_tasks), bool(is_live))

    async def _owned_by_another(self, read: _Read, tid: str, client_id: str, ttl: float) -> bool:
        """Whether the shared-key task `tid` belongs to another client: its record says so,
        or, with no record in this partition, the owner claimed where every partition looks
        (the tracking id's partition; claimed for `client_id` if nobody has it:
        `tracker.store.owners`)."""
        if read.task is not None:
            owner = read.task.owner
        else:
            owner = await self.owners.claim(tid, client_id, ttl)
        return owner not in {"", client_id}

    async def _check_limits(self, read: _Read, subscription: Subscription, limits: Limits) -> None:
        """LimitReached if the new subscription would pass one of `limits`."""
        others = [
            s for s in await self.tasks.subscriptions_of(read.task) if s.id != subscription.id
        ]
        ended = read.task is not None and read.task.state.is_final
        refused = registration_refused(
            limits, subscription.client_id, others, live_tasks=read.live_tasks,
            task_is_live_for_client=read.is_live, task_will_be_live=not ended,
        )  # fmt: skip
        if refused is not None:
            raise LimitReached(refused)

    async def _commit(
        self,
        read: _Read,
        tid: str,
        subscription: Subscription,
        ids: tuple[str, ...],
        *,
        limits: Limits,
        now: float,
        deadline_at: float,
        first_poll_at: float,
        upstream_key: str,
    ) -> Registration | None:
        """Write the registration of a task still tracking (or new), if it is still as `read`
        (`scripts.REGISTER`); None on a conflict (read again)."""
        anew, written = _task_writes(
            read.task, ids, subscription, now=now, deadline_at=deadline_at,
            first_poll_at=first_poll_at, upstream_key=upstream_key,
        )  # fmt: skip
        client_id = subscription.client_id
        if upstream_key and upstream_key != DENIED:
            # Before the registration: its task is found by the key's fingerprint even
            # after the client drops the key (a crash in between leaves only this entry).
            await self.redis.zadd(self.keys.client_key_scopes(client_id), {upstream_key: now})
        committed = await self._register(
            keys=[
                self.keys.task(tid), self.keys.subscription(subscription.id),
                self.keys.subscription_deliveries(subscription.id), self.keys.DUE_TASKS,
                self.keys.client_tasks(client_id), self.keys.client_live_tasks(client_id),
            ],
            args=[
                tid, read.fields.get("state", ""), read.fields.get("subs", ""), repr(now),
                repr(first_poll_at), limits.live_tasks_per_client, 1 if anew else 0,
                2 * len(written), *codec.hash_items(written),
                *codec.hash_items(codec.subscription_fields(subscription)),
            ],
        )  # fmt: skip
        if committed == -1:  # its other registrations filled the limit since the read
            raise LimitReached(live_tasks_refused(limits))
        return Registration(subscription, created=True) if committed == 1 else None

    async def _subscribe_to_ended(
        self,
        task: Task,
        tid: str,
        subscription: Subscription,
        ids: tuple[str, ...],
        read: dict[str, str],
        now: float,
    ) -> Registration | None:
        """A subscription to an ended task, with its final event staged, in one transaction;
        None if the task changed since `read` (read again)."""
        task_key = self.keys.task(tid)

        copying = self.keys.copy(copy_id(tid, subscription.client_id))

        async def attempt(pipe: Pipeline) -> Registration | None:
            await pipe.watch(task_key, copying)
            state, subs = await pipe.hmget(task_key, "state", "subs")
            if (state, subs or b"") != (read["state"].encode(), read.get("subs", "").encode()):
                return None
            assert task.result is not None
            deliveries = final_deliveries(task, task.result, task.upstream, [subscription], now)
            # A copy under way makes this subscription's event too, when it ends; else one is
            # made (again: its objects land where they were, byte for byte).
            copy_again = wants_copies(subscription, task.result) and (
                await pipe.hget(copying, "state") != CopyState.COPYING.value.encode()
            )
            pipe.multi()
            pipe.hset(task_key, "subs", " ".join(ids))
            pipe.hset(
                self.keys.subscription(subscription.id),
                mapping=codec.subscription_fields(subscription),
            )
            pipe.zadd(self.keys.client_tasks(subscription.client_id), {tid: now}, nx=True)
            stage_new(pipe, self.keys, deliveries, seq=task.polls, now=now, feed=self.tasks.feed)
            if copy_again:
                stage_copies(
                    pipe, self.keys, task, tid, sources_of(task.result),
                    {subscription.client_id}, now, now + self.tasks.storage_deadline,
                )  # fmt: skip
            for key in self.keys.task_record_keys(tid, subscription.id):
                pipe.expire(key, self.tasks.task_retention)
            await pipe.execute()
            return Registration(subscription, created=True)

        return await transaction(self.redis, attempt)


def _task_writes(
    task: Task | None,
    ids: tuple[str, ...],
    subscription: Subscription,
    *,
    now: float,
    deadline_at: float,
    first_poll_at: float,
    upstream_key: str,
) -> tuple[bool, dict[str, str]]:
    """Whether a registration writes the task anew (a new one, or a cancelled one tracked
    again, whose first poll is then due), and the task's fields it writes."""
    # Whether a poll that sees a new status must make events (see TOUCH_TASK): set by the
    # first subscription that asks, never cleared.
    asks = EventType.STATUS_CHANGED in subscription.events
    if task is not None and task.state is not TaskState.CANCELLED:
        return False, {"subs": " ".join(ids), **({"status_events": "1"} if asks else {})}
    client_id = subscription.client_id
    fields = codec.task_fields(
        Task(
            task_id=subscription.task_id,
            state=TaskState.TRACKING,
            created_at=now,
            updated_at=now,
            deadline_at=deadline_at,
            next_poll_at=first_poll_at,
            subscription_ids=ids,
            upstream_key=upstream_key,
            key_holder=client_id if upstream_key else "",
            owner=task.owner if task is not None and task.owner else client_id,
        )
    )
    return True, {**fields, "status_events": "1" if asks else "0"}
