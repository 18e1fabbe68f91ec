"""Copies of videos in object storage, as records: one per client and task (a *copy*), with
its due time in one due set, leased like polls and deliveries.

A copy moves forward only: `copying` (due now, then again while a try fails and its deadline
has not passed) → `stored` (due again when its objects are to be removed) → `removing` (the
task was deleted: due now) → gone. Each step is compare-and-set on the state, so a stale
worker never moves one back. The `video.completed` events that waited for a copy are made in
the same transaction that records it stored (`release`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from tracker.core.events import stored_deliveries
from tracker.core.ids import derived_id
from tracker.core.records import Delivery, Subscription, Task, TaskState
from tracker.core.storage import Source, Stored, outputs_from_json, outputs_json
from tracker.store import codec, keys, scripts
from tracker.store.deliveries import stage_new
from tracker.store.feed import FeedPolicy
from tracker.store.transaction import transaction

# A copy passed over for its client's cap waits this long before it is looked at again.
PASS_OVER = 1.0


class Subscriptions(Protocol):
    """What a copy needs of `tracker.store.tasks.Tasks` (which stages copies itself)."""

    async def subscriptions_of(self, task: Task | None) -> list[Subscription]: ...


class CopyState(StrEnum):
    COPYING = "copying"
    STORED = "stored"
    REMOVING = "removing"


@dataclass(frozen=True)
class Copy:
    id: str
    tracking_id: str
    task_id: str
    client_id: str
    state: CopyState
    deadline_at: float
    sources: tuple[Source, ...]
    outputs: tuple[Stored, ...]  # each output's outcome so far (all of them once stored)
    location: str  # where its objects are (`Location` as text), once stored
    remove_at: float
    tries: int


def copy_id(tracking_id: str, client_id: str) -> str:
    return derived_id("copy", tracking_id, client_id)


def stage_copies(
    pipe: Pipeline,
    space: keys.Keyspace,
    task: Task,
    tracking_id: str,
    sources: Sequence[Source],
    client_ids: set[str],
    now: float,
    deadline_at: float,
) -> None:
    """Queue into a transaction the copies of `task`'s videos for each of `client_ids`, due
    now."""
    for client_id in client_ids:
        member = copy_id(tracking_id, client_id)
        fields = {
            "tracking_id": tracking_id,
            "task_id": task.task_id,
            "client_id": client_id,
            "state": CopyState.COPYING.value,
            "deadline_at": repr(deadline_at),
            "sources": json.dumps([[s.name, s.url] for s in sources]),
            "tries": "0",
        }
        pipe.eval(
            scripts.STAGE_COPY, 3, space.copy(member), space.DUE_COPIES, space.STORAGE_TOTALS,
            member, client_id, repr(now), *codec.hash_items(fields),
        )  # fmt: skip


def _copy(member: str, raw: dict[str, str]) -> Copy | None:
    try:
        return Copy(
            id=member,
            tracking_id=raw["tracking_id"],
            task_id=raw["task_id"],
            client_id=raw["client_id"],
            state=CopyState(raw["state"]),
            deadline_at=float(raw["deadline_at"]),
            sources=tuple(Source(name, url) for name, url in json.loads(raw["sources"])),
            outputs=tuple(outputs_from_json(raw.get("outputs"))),
            location=raw.get("location", ""),
            remove_at=float(raw.get("remove_at", "0")),
            tries=int(raw.get("tries", "0")),
        )
    except (KeyError, ValueError):
        return None


class Copies:
    def __init__(
        self, redis: Redis, space: keys.Keyspace, tasks: Subscriptions, feed: FeedPolicy
    ) -> None:
        self.redis = redis
        self.keys = space
        self.tasks = tasks
        self.feed = feed
        self._claim = redis.register_script(scripts.CLAIM_COPIES)

    async def claim_due(
        self, now: float, limit: int, lease_until: float, *, per_client: int, scan: int
    ) -> tuple[list[str], float | None]:
        """Lease up to `limit` due copies, at most `per_client` of one client's in flight
        (`scripts.CLAIM_COPIES`); also when the next one is due."""
        claimed, first = await self._claim(
            keys=[self.keys.DUE_COPIES],
            args=[
                now, limit, lease_until, scan, per_client, self.keys.copy("%s"), PASS_OVER,
                self.keys.client_copying("%s"),
            ],
        )  # fmt: skip
        return [c.decode() for c in claimed], float(first) if first else None

    async def get(self, member: str) -> Copy | None:
        return _copy(member, codec.text(await self.redis.hgetall(self.keys.copy(member))))

    async def get_many(self, members: Sequence[str]) -> list[Copy | None]:
        """The copies, in one round trip (a claimed batch)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.hgetall(self.keys.copy(member))
            found = await pipe.execute()
        return [_copy(m, codec.text(raw)) for m, raw in zip(members, found, strict=True)]

    async def of_task(self, tracking_id: str, client_id: str) -> Copy | None:
        return await self.get(copy_id(tracking_id, client_id))

    async def vacate(self, member: str, client_id: str) -> None:
        """Give back the client's slot the copy held (its work ended, or was handed back)."""
        await self.redis.zrem(self.keys.client_copying(client_id), member)

    async def progress(
        self, member: str, outputs: Sequence[Stored], retry_at: float, tries: int
    ) -> None:
        """Keep what a try came to, and come back at `retry_at` (if it is still copying)."""

        async def attempt(pipe: Pipeline) -> None:
            await pipe.watch(self.keys.copy(member))
            if await pipe.hget(self.keys.copy(member), "state") != CopyState.COPYING.value.encode():
                return
            pipe.multi()
            pipe.hset(
                self.keys.copy(member),
                mapping={"outputs": outputs_json(list(outputs)), "tries": str(tries)},
            )
            pipe.zadd(self.keys.DUE_COPIES, {member: retry_at}, xx=True)
            await pipe.execute()

        await transaction(self.redis, attempt)

    async def release(
        self,
        found: Copy,
        outputs: Sequence[Stored],
        event_outputs: list[dict[str, Any]],
        *,
        location: str,
        remove_at: float,
        now: float,
    ) -> tuple[Delivery, ...]:
        """Record the copy stored (its outputs, where) and make the `video.completed` events
        that waited for it, in one transaction; nothing if it is no longer copying."""
        copy_key = self.keys.copy(found.id)
        stored = [o for o in outputs if o.error is None]

        async def attempt(pipe: Pipeline) -> tuple[Delivery, ...]:
            await pipe.watch(copy_key, self.keys.task(found.tracking_id))
            state = await pipe.hget(copy_key, "state")
            if state == CopyState.REMOVING.value.encode():
                # The task was deleted while this copy ran: what it stored goes at once.
                pipe.multi()
                pipe.hset(copy_key, mapping={"outputs": outputs_json(list(outputs)),
                                             "location": location})  # fmt: skip
                pipe.zadd(self.keys.DUE_COPIES, {found.id: now})
                await pipe.execute()
                return ()
            if state != CopyState.COPYING.value.encode():
                return ()
            raw = codec.text(await pipe.hgetall(self.keys.task(found.tracking_id)))
            task = codec.task(raw)
            deliveries: tuple[Delivery, ...] = ()
            if task is not None and task.result is not None and task.state is TaskState.COMPLETED:
                answer = await pipe.get(self.keys.task_answer(found.tracking_id))
                upstream = codec.upstream_answer(answer, raw.get("snapshot", "").encode() or None)
                subscriptions = await self.tasks.subscriptions_of(task)
                deliveries = stored_deliveries(
                    task.result, upstream, subscriptions, found.client_id, event_outputs, now
                )
            pipe.multi()
            pipe.hset(
                copy_key,
                mapping={
                    "state": CopyState.STORED.value,
                    "outputs": outputs_json(list(outputs)),
                    "location": location,
                    "remove_at": repr(remove_at),
                    "stored_objects": str(len(stored)),
                    "stored_bytes": str(sum(o.size for o in stored)),
                },
            )
            pipe.zadd(self.keys.DUE_COPIES, {found.id: remove_at})
            pipe.zrem(self.keys.client_copying(found.client_id), found.id)
            _count(pipe, self.keys, found.client_id, len(stored), sum(o.size for o in stored))
            stage_new(
                pipe, self.keys, deliveries, seq=task.polls if task else 0, now=now, feed=self.feed
            )
            await pipe.execute()
            return deliveries

        return await transaction(self.redis, attempt)

    async def remove_for(self, tracking_id: str, client_id: str, now: float) -> bool:
        """Have the client's copies of a task removed (the task was deleted): due now, or,
        while a worker copies it, once that copy ends (`release`), never beside it."""
        member = copy_id(tracking_id, client_id)

        async def attempt(pipe: Pipeline) -> bool:
            await pipe.watch(self.keys.copy(member))
            state = await pipe.hget(self.keys.copy(member), "state")
            if state is None:
                return False
            pipe.multi()
            pipe.hset(self.keys.copy(member), "state", CopyState.REMOVING.value)
            # A copy under way keeps its lease (GT: never shortened); the rest is due now.
            copying = state == CopyState.COPYING.value.encode()
            pipe.zadd(self.keys.DUE_COPIES, {member: now}, gt=copying)
            await pipe.execute()
            return True

        return await transaction(self.redis, attempt)

    async def forget(self, found: Copy) -> None:
        """The copy's objects are removed (or were never made): its record goes, and what
        it had stored leaves the totals."""

        async def attempt(pipe: Pipeline) -> None:
            await pipe.watch(self.keys.copy(found.id))
            objects, size = await pipe.hmget(
                self.keys.copy(found.id), "stored_objects", "stored_bytes"
            )
            pipe.multi()
            pipe.delete(self.keys.copy(found.id))
            pipe.zrem(self.keys.DUE_COPIES, found.id)
            pipe.zrem(self.keys.client_copying(found.client_id), found.id)
            _count(pipe, self.keys, found.client_id, -int(objects or 0), -int(size or 0))
            await pipe.execute()

        await transaction(self.redis, attempt)

    async def reschedule(self, member: str, at: float) -> None:
        await self.redis.zadd(self.keys.DUE_COPIES, {member: at}, xx=True)

    async def totals(self) -> dict[str, int]:
        """The objects stored and their bytes, in all and per client (`Keyspace.STORAGE_TOTALS`)."""
        raw = await self.redis.hgetall(self.keys.STORAGE_TOTALS)
        return {k.decode(): int(v) for k, v in raw.items()}


def _count(pipe: Pipeline, space: keys.Keyspace, client_id: str, objects: int, size: int) -> None:
    if not objects:
        return
    for suffix in ("", f":{client_id}"):
        pipe.hincrby(space.STORAGE_TOTALS, "objects" + suffix, objects)
        pipe.hincrby(space.STORAGE_TOTALS, "bytes" + suffix, size)
