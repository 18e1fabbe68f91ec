"""What polls record: the due set with its leases, each poll's outcome, and the end of a task.

A stale poller never changes a task that is no longer tracking: every write here checks the
state first, in a Lua script or under WATCH.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from tracker.core import jsontext
from tracker.core.events import final_deliveries, status_deliveries
from tracker.core.records import (
    Delivery,
    Result,
    Subscription,
    SubscriptionState,
    Task,
    TaskState,
)
from tracker.core.storage import sources_of, wants_copies
from tracker.core.upstream import summary
from tracker.store import codec, keys, scripts
from tracker.store.batching import ScriptBatch
from tracker.store.copies import stage_copies
from tracker.store.deliveries import stage_new
from tracker.store.tasks import Tasks
from tracker.store.transaction import transaction


class Polls:
    def __init__(self, redis: Redis, space: keys.Keyspace, tasks: Tasks) -> None:
        self.redis = redis
        self.keys = space
        self.tasks = tasks
        # Most polls only touch their task, many at once in a busy worker: one round trip.
        self._touch = ScriptBatch(redis, scripts.TOUCH_TASK)
        self._claim = redis.register_script(scripts.CLAIM_DUE)
        self._forget = redis.register_script(scripts.FORGET_DUE)

    async def claim_due(
        self, now: float, limit: int, lease_until: float, *, scan: int
    ) -> tuple[list[str], float | None]:
        """Lease up to `limit` tasks whose poll is due, taken in turn from each client that
        owns some (see `scripts.CLAIM_DUE`): only this caller polls them now. Looks at `scan`
        due entries at most.

        Also returns when the next task (claimed ones included) is due, None if none is.
        """
        claimed, first = await self._claim(
            keys=[self.keys.DUE_TASKS],
            args=[
                now,
                limit,
                lease_until,
                scan,
                repr(scripts.CLAIM_PASS_OVER),
                self.keys.task("%s"),
            ],
        )
        return [task_id.decode() for task_id in claimed], float(first) if first else None

    async def reschedule(self, task_id: str, at: float) -> None:
        """Move a claimed task's next poll to `at` (never re-adding one that ended meanwhile)."""
        await self.redis.zadd(self.keys.DUE_TASKS, {task_id: at}, xx=True)

    async def forget_due(self, task_id: str) -> None:
        """Stop polling a task that is not tracked (ended, cancelled, expired)."""
        await self._forget(keys=[self.keys.task(task_id), self.keys.DUE_TASKS], args=[task_id])

    async def _watch_tracked(
        self, pipe: Pipeline, task_id: str
    ) -> tuple[Task, list[Subscription]] | None:
        """WATCH the task and read it with its subscriptions; None unless it is tracking
        (so a stale poller never brings an ended or cancelled task back)."""
        await pipe.watch(self.keys.task(task_id))
        task = codec.task(codec.text(await pipe.hgetall(self.keys.task(task_id))))
        if task is None or task.state is not TaskState.TRACKING:
            return None
        return task, await self.tasks.subscriptions_of(task)

    async def record_poll(
        self,
        task_id: str,
        *,
        polls: int,
        rejections: int,
        status: str | None,
        previous_status: str | None,
        upstream: dict[str, Any] | None,
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
        if upstream is not None:  # its top-level fields (a final answer is kept whole apart)
            fields["snapshot"] = jsontext.dumps(summary(upstream)).decode()
        if origin is not None:
            fields["origin"] = repr(origin)
        changed = status if status is not None and status != previous_status else None
        if changed is not None:
            fields["upstream_status"] = changed
            fields["history"] = jsontext.dumps(list(history)).decode()
        # One script call (shared with the other polls recorded within 2 ms), unless the status
        # changed and a subscription asked for status changes: then a transaction makes them.
        touched = await self._touch(
            keys=[self.keys.task(task_id), self.keys.DUE_TASKS],
            args=[
                task_id, repr(next_poll_at), 0 if changed is None else 1,
                *codec.hash_items(fields),
            ],
        )  # fmt: skip
        if touched != 2 or changed is None:
            return ()
        task_key = self.keys.task(task_id)

        async def attempt(pipe: Pipeline) -> tuple[Delivery, ...]:
            tracked = await self._watch_tracked(pipe, task_id)
            if tracked is None:
                return ()
            _, subscriptions = tracked
            deliveries = status_deliveries(task_id, changed, polls, upstream, subscriptions, now)
            pipe.multi()
            pipe.hset(task_key, mapping=fields)
            pipe.zadd(self.keys.DUE_TASKS, {task_id: next_poll_at})
            stage_new(pipe, self.keys, deliveries, seq=polls, now=now, feed=self.tasks.feed)
            await pipe.execute()
            return deliveries

        return await transaction(self.redis, attempt)

    async def finish(
        self,
        task_id: str,
        *,
        result: Result,
        upstream: dict[str, Any] | None,
        polls: int,
        now: float,
    ) -> tuple[Delivery, ...]:
        """End a tracked task and create its deliveries, in one transaction.

        Only a task still tracking can end, so an outcome yields its events once.
        """
        task_key = self.keys.task(task_id)

        async def attempt(pipe: Pipeline) -> tuple[Delivery, ...]:
            tracked = await self._watch_tracked(pipe, task_id)
            if tracked is None:
                return ()
            task, subscriptions = tracked
            final = upstream if upstream is not None else task.upstream
            deliveries = final_deliveries(task, result, final, subscriptions, now)
            fields = {
                "state": result.state.value,
                "result": codec.result_json(result),
                "polls": str(polls),
                "updated_at": repr(now),
            }
            if result.status is not None:
                fields["upstream_status"] = result.status
            if final is not None:
                # The whole answer in a key of its own: in the hash it would be the one value
                # too long for Redis's compact encoding, and every field would pay for it.
                fields["snapshot"] = jsontext.dumps(summary(final)).decode()
            pipe.multi()
            pipe.hset(task_key, mapping=fields)
            if final is not None:
                pipe.set(self.keys.task_answer(task_id), codec.answer_bytes(final))
            pipe.zrem(self.keys.DUE_TASKS, task_id)
            for client_id in {s.client_id for s in subscriptions}:
                pipe.srem(self.keys.client_live_tasks(client_id), task_id)
            stage_new(pipe, self.keys, deliveries, seq=polls, now=now, feed=self.tasks.feed)
            # Subscriptions that keep copies get their event once the copies are made.
            keeping = {
                s.client_id
                for s in subscriptions
                if s.state is SubscriptionState.ACTIVE and wants_copies(s, result)
            }
            stage_copies(
                pipe, self.keys, task, task_id, sources_of(result), keeping, now,
                now + self.tasks.storage_deadline,
            )  # fmt: skip
            for key in self.keys.task_record_keys(task_id, *(s.id for s in subscriptions)):
                pipe.expire(key, self.tasks.task_retention)
            await pipe.execute()
            return deliveries

        return await transaction(self.redis, attempt)
