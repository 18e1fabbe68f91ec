"""Tasks and their subscriptions: reading them, cancelling, and the holder of a task's key
(registering is `tracker.store.registration`; what each poll records, `tracker.store.polls`).

Every change that must not be half-made is one MULTI/EXEC, guarded by WATCH on the task's
hash where it depends on what it read. Which subscription gets which event is decided by
`tracker.core.events`; this module only stores the outcome.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from tracker.core.records import (
    Subscription,
    SubscriptionState,
    Task,
    TaskState,
)
from tracker.core.upstream_keys import DENIED
from tracker.core.vault import Vault
from tracker.store import codec, keys, scripts
from tracker.store.feed import FeedPolicy
from tracker.store.transaction import transaction


class Tasks:
    """Task records, the due set of polls, and the subscriptions hanging off each task.

    An ended or cancelled task, its subscriptions and their indexes expire `task_retention`
    seconds after it ends; live records never expire.
    """

    def __init__(
        self,
        redis: Redis,
        space: keys.Keyspace,
        *,
        task_retention: int,
        feed: FeedPolicy,
        storage_deadline: float = 1800.0,
    ) -> None:
        self.redis = redis
        self.keys = space
        self.task_retention = task_retention
        self.feed = feed
        self.storage_deadline = storage_deadline  # how long a final event waits for copies
        self._find_tracked = redis.register_script(scripts.FIND_TRACKED)
        self._hand_key = redis.register_script(scripts.HAND_KEY)

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
        found = await self._find_tracked(
            keys=[
                self.keys.client_tasks(client_id),
                self.keys.client_upstream_keys(client_id),
                self.keys.client_key_scopes(client_id),
            ],
            args=[task_id, DENIED],
        )
        return found.decode() if found else None

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
