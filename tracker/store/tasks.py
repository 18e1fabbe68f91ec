"""Tasks and their subscriptions: registration, cancellation, and what each poll records.

Every change that must not be half-made is one MULTI/EXEC, guarded by WATCH on the task's
hash where it depends on what it read. Which subscription gets which event is decided by
`tracker.core.events`; this module only stores the outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from tracker.core import search
from tracker.core.events import final_deliveries
from tracker.core.ids import derived_id, tracking_id
from tracker.core.limits import Limits, live_tasks_refused, registration_refused
from tracker.core.records import (
    EventType,
    Subscription,
    SubscriptionState,
    Task,
    TaskState,
)
from tracker.core.storage import sources_of, wants_copies
from tracker.core.upstream_keys import DENIED
from tracker.core.vault import Vault
from tracker.errors import LimitReached
from tracker.store import codec, keys, scripts
from tracker.store.clients import Clients
from tracker.store.copies import CopyState, copy_id, stage_copies
from tracker.store.deliveries import stage_new
from tracker.store.feed import FeedPolicy
from tracker.store.owners import Owners
from tracker.store.transaction import transaction

DEFAULT_LIMITS = Limits()

# The most of a client's tasks one page of its list looks at (see `list_for_client`): about
# 30 ms of the API's time and Redis's, where a filter nothing matched read every task (411 ms
# at 10,000 tasks).
PAGE_SCAN = 1000


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


class Tasks:
    """Task records, the due set of polls, and the subscriptions hanging off each task.

    An ended or cancelled task, its subscriptions and their indexes expire `task_retention`
    seconds after it ends; live records never expire.
    """

    def __init__(
        self,
        redis: Redis,
        space: keys.Keyspace,
        clients: Clients,
        owners: Owners,
        *,
        task_retention: int,
        feed: FeedPolicy,
        storage_deadline: float = 1800.0,
    ) -> None:
        self.redis = redis
        self.keys = space
        self.clients = clients  # the home's, for the keys a client holds
        self.owners = owners
        self.task_retention = task_retention
        self.feed = feed
        self.storage_deadline = storage_deadline  # how long a final event waits for copies
        self._find_tracked = redis.register_script(scripts.FIND_TRACKED)
        self._register = redis.register_script(scripts.REGISTER)
        self._forget_expired = redis.register_script(scripts.FORGET_EXPIRED_TASKS)
        self._search = redis.register_script(scripts.SEARCH_TASKS)
        self._hand_key = redis.register_script(scripts.HAND_KEY)

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
                ttl = deadline_at - now + self.task_retention
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
                found = await self.subscription(subscription.id)
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
        or, with no record in this partition, the owner claimed under the home tag (claimed
        for `client_id` here if nobody has it: `tracker.store.owners`)."""
        if read.task is not None:
            owner = read.task.owner
        else:
            owner = await self.owners.claim(tid, client_id, ttl)
        return owner not in {"", client_id}

    async def _check_limits(self, read: _Read, subscription: Subscription, limits: Limits) -> None:
        """LimitReached if the new subscription would pass one of `limits`."""
        others = [s for s in await self.subscriptions_of(read.task) if s.id != subscription.id]
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
            stage_new(pipe, self.keys, deliveries, seq=task.polls, now=now, feed=self.feed)
            if copy_again:
                stage_copies(
                    pipe, self.keys, task, tid, sources_of(task.result),
                    {subscription.client_id}, now, now + self.storage_deadline,
                )  # fmt: skip
            for key in self.keys.task_record_keys(tid, subscription.id):
                pipe.expire(key, self.task_retention)
            await pipe.execute()
            return Registration(subscription, created=True)

        return await transaction(self.redis, attempt)

    async def cancel(self, client_id: str, task_id: str, now: float) -> bool:
        """Stop `client_id`'s subscriptions to the task tracked as `task_id` (its tracking id,
        `tracker.core.ids.tracking_id`); stop polling if none is left.

        Returns False when the client had no active subscription to it.
        """
        task_key = self.keys.task(task_id)

        async def attempt(pipe: Pipeline) -> bool:
            await pipe.watch(task_key)
            task = codec.task(codec.text(await pipe.hgetall(task_key)))
            subscriptions = await self.subscriptions_of(task)
            active = [s for s in subscriptions if s.state is SubscriptionState.ACTIVE]
            mine = [s for s in active if s.client_id == client_id]
            if not mine:
                return False
            pipe.multi()
            pipe.srem(self.keys.client_live_tasks(client_id), task_id)
            for sub in mine:
                pipe.hset(
                    self.keys.subscription(sub.id), "state", SubscriptionState.CANCELLED.value
                )
            if len(mine) == len(active) and task is not None and task.state is TaskState.TRACKING:
                pipe.hset(
                    task_key,
                    mapping={"state": TaskState.CANCELLED.value, "updated_at": repr(now)},
                )
                pipe.zrem(self.keys.DUE_TASKS, task_id)
                for key in self.keys.task_record_keys(task_id, *(s.id for s in subscriptions)):
                    pipe.expire(key, self.task_retention)
            await pipe.execute()
            return True

        return await transaction(self.redis, attempt)

    # -- reads -------------------------------------------------------------------------------

    async def tracked_as(self, client_id: str, task_id: str) -> str | None:
        """The tracking id of the client's task with upstream id `task_id` (under the shared
        key, else one of its own), in one round trip; None if it never subscribed to one."""
        held = await self.clients.upstream_key_names(client_id)
        found = await self._find_tracked(
            keys=[self.keys.client_tasks(client_id), self.keys.client_key_scopes(client_id)],
            args=[task_id, DENIED, *held],
        )
        return found.decode() if found else None

    async def forget_expired(
        self, client_id: str, after: float, cutoff: float, limit: int
    ) -> tuple[int, float | None]:
        """Drop from the client's task index up to `limit` entries registered after `after`
        and by `cutoff` whose task records expired; how many went, and the registration time
        of the last entry looked at (None: there were none), to go on from."""
        dropped, last = await self._forget_expired(
            keys=[self.keys.client_tasks(client_id)],
            args=[repr(after), repr(cutoff), limit, self.keys.task("%s")],
        )
        return int(dropped), float(last) if last else None

    async def forget_old_scopes(self, client_id: str, cutoff: float) -> None:
        """Forget the key fingerprints the client last registered with before `cutoff`: none
        of their tasks can be left (`forget_expired`)."""
        await self.redis.zremrangebyscore(self.keys.client_key_scopes(client_id), "-inf", cutoff)

    async def hand_key_to(self, tracking_id: str, client_id: str) -> None:
        """Poll the task from now on with `client_id`'s copy of its key (its holder dropped
        its own), while it is tracked."""
        await self._hand_key(keys=[self.keys.task(tracking_id)], args=[client_id])

    async def reseal_headers(self, vault: Vault) -> int:
        """Seal the headers clients send with their webhooks, kept sealed on their
        subscriptions, with `vault`'s first key; how many were sealed again."""
        resealed = 0
        async for key in self.redis.scan_iter(match=self.keys.subscription("*"), _type="hash"):
            sealed = await self.redis.hget(key, "headers")
            if sealed is not None and vault.needs_resealing(sealed.decode()):
                await self.redis.hset(key, "headers", vault.seal(vault.open(sealed.decode())))
                resealed += 1
        return resealed

    async def live_count(self, client_id: str) -> int:
        """How many tasks still tracking the client has subscriptions to (its limit's count)."""
        return int(await self.redis.scard(self.keys.client_live_tasks(client_id)))

    async def owned(self, client_id: str, task_id: str) -> tuple[Task, list[Subscription]] | None:
        """The task with upstream id `task_id` as the client tracks it, with the client's
        subscriptions to it; None if it has none (another client's task looks the same as an
        unknown one)."""
        tid = await self.tracked_as(client_id, task_id)
        if tid is None:
            return None
        # The task first: an ended task's deliveries were written with its final state, so
        # what is read after it includes them (the other order could show "completed" without).
        task = await self.get(tid)
        mine = [s for s in await self.subscriptions_of(task) if s.client_id == client_id]
        return (task, mine) if task is not None and mine else None

    async def search_for_client(
        self, client_id: str, text: str, scan: int, limit: int, state: TaskState | None
    ) -> list[tuple[Task, float]]:
        """The client's tasks, newest first among its `scan` newest, whose id or whose
        metadata (in the client's own subscriptions) contains `text`
        (`tracker.core.search`), in two round trips: Redis passes over the tasks whose text
        cannot hold it (`scripts.SEARCH_TASKS`), the candidates are matched in full here, and
        only the hits' whole records are read."""
        candidates = await self._search(
            keys=[self.keys.client_tasks(client_id)],
            args=[
                scan, client_id, search.prefilter(text), state.value if state else "",
                self.keys.task("%s"), self.keys.subscription("%s"),
            ],
        )  # fmt: skip
        hits: list[tuple[str, float]] = []
        for member, at, task_id, *documents in candidates:
            raws = [d.decode() for d in documents]
            if search.task_matches(task_id.decode(), search.metadata_of(raws, text), text):
                hits.append((member.decode(), float(at)))
                if len(hits) == limit:
                    break
        tasks = await self.get_many([member for member, _ in hits])
        return [(task, at) for task, (_, at) in zip(tasks, hits, strict=True) if task is not None]

    async def get(self, task_id: str) -> Task | None:
        """The task, with its whole final answer once it ended (others read only its hash)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.task(task_id))
            pipe.get(self.keys.task_answer(task_id))
            raw, answer = await pipe.execute()
        return codec.task(codec.text(raw), answer)

    async def get_many(self, task_ids: Sequence[str]) -> list[Task | None]:
        """Several task records in one round trip."""
        if not task_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.hgetall(self.keys.task(task_id))
            found = await pipe.execute()
        return [codec.task(codec.text(raw)) for raw in found]

    async def subscription(self, subscription_id: str) -> Subscription | None:
        raw = codec.text(await self.redis.hgetall(self.keys.subscription(subscription_id)))
        return codec.subscription(subscription_id, raw) if raw else None

    async def subscriptions_of(self, task: Task | None) -> list[Subscription]:
        """A task's subscriptions, oldest first, read in one round trip."""
        if task is None or not task.subscription_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for subscription_id in task.subscription_ids:
                pipe.hgetall(self.keys.subscription(subscription_id))
            found = await pipe.execute()
        subscriptions = [
            codec.subscription(subscription_id, codec.text(raw))
            for subscription_id, raw in zip(task.subscription_ids, found, strict=True)
            if raw
        ]
        return sorted(subscriptions, key=lambda s: s.created_at)

    async def count_for_client(self, client_id: str) -> int:
        """How many tasks the client has registered that are still kept."""
        return int(await self.redis.zcard(self.keys.client_tasks(client_id)))

    async def list_for_client(
        self,
        client_id: str,
        *,
        before: float | None,
        limit: int,
        state: TaskState | None,
        scan: int = PAGE_SCAN,
    ) -> tuple[list[tuple[Task, float]], float | None]:
        """The client's tasks, newest registration first, each with its registration time.

        `before` is the cursor: only tasks registered strictly earlier. Returns the page and
        the cursor of the next page (None at the end). Each batch is read in one round trip.
        A page looks at `scan` tasks at most, so a `state` that few tasks are in gives short
        (even empty) pages with a cursor to go on from, never one request that reads them all.
        """
        index = self.keys.client_tasks(client_id)
        found: list[tuple[Task, float]] = []
        upper: float | str = "+inf" if before is None else f"({before!r}"
        looked, last = 0, 0.0
        while looked < scan:
            batch = await self.redis.zrevrangebyscore(
                index, upper, "-inf", start=0, num=min(limit * 2, scan - looked), withscores=True
            )
            if not batch:
                return found, None
            looked, last = looked + len(batch), batch[-1][1]
            records = await self.get_many([member.decode() for member, _ in batch])
            expired = [member for (member, _), task in zip(batch, records, strict=True) if not task]
            if expired:  # expired with its retention: forget it here too
                await self.redis.zrem(index, *expired)
            for (_, score), task in zip(batch, records, strict=True):
                if task is not None and (state is None or task.state is state):
                    found.append((task, score))
                    if len(found) == limit:
                        return found, score
            upper = f"({last!r}"
        return found, last


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
