"""Recovering a destination: the deliveries to one of a client's callback origins that failed
within a time window, found through the client's task index, and each recovery's list kept a
day so its progress can be read."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from tracker.core.ids import new_id
from tracker.core.origins import origin_of
from tracker.core.records import DeliveryState
from tracker.store import keys

# A delivery's window reaches back this far before its task's registration: a task polled
# for up to TRACKER_POLL_DEADLINE, then delivered for about a day.
REACH_BACK = 2 * 86400.0
BATCH = 200
RECOVERY_KEPT = 86400
# Failed for good, or failing (an attempt made and refused): what a recovery sends again.
FAILED = {DeliveryState.DEAD.value, DeliveryState.GONE.value}


@dataclass(frozen=True)
class Found:
    delivery_id: str
    tracking_id: str
    state: str


def failed(state: str, attempts: int) -> bool:
    """Dead, gone, or pending after a refused attempt: what a recovery sends again."""
    return state in FAILED or (state == "pending" and attempts > 0)


def pending(state: str, attempts: int) -> bool:
    """Waiting to be sent: what enabling a destination makes due again."""
    return state == "pending"


async def failed_to(
    redis: Redis,
    space: keys.Keyspace,
    client_id: str,
    origin: str,
    since: float,
    until: float,
    *,
    limit: int,
    scan: int,
    wanted: Callable[[str, int], bool] = failed,
) -> tuple[list[Found], bool]:
    """The client's deliveries to `origin` made between `since` and `until` that are
    `wanted` (by state and attempts; default `failed`); at most `limit`, looking at `scan`
    tasks at most. Also whether there may be more."""
    tasks = await redis.zrangebyscore(
        space.client_tasks(client_id), since - REACH_BACK, until, start=0, num=scan
    )
    found: list[Found] = []
    for start in range(0, len(tasks), BATCH):
        batch = [t.decode() for t in tasks[start : start + BATCH]]
        async with redis.pipeline(transaction=False) as pipe:
            for tracking_id in batch:
                pipe.hget(space.task(tracking_id), "subs")
            subs_of = await pipe.execute()
        owned: list[tuple[str, str]] = []  # (tracking id, subscription id)
        async with redis.pipeline(transaction=False) as pipe:
            for tracking_id, subs in zip(batch, subs_of, strict=True):
                for sub_id in (subs or b"").decode().split():
                    owned.append((tracking_id, sub_id))
                    pipe.hmget(space.subscription(sub_id), "client_id", "callback_url")
            described = await pipe.execute()
        mine = [
            (tracking_id, sub_id)
            for (tracking_id, sub_id), (owner, url) in zip(owned, described, strict=True)
            if owner is not None
            and owner.decode() == client_id
            and url
            and origin_of(url.decode()) == origin
        ]
        async with redis.pipeline(transaction=False) as pipe:
            for _, sub_id in mine:
                pipe.lrange(space.subscription_deliveries(sub_id), 0, -1)
            listed = await pipe.execute()
        candidates = [
            (tracking_id, d.decode()) for (tracking_id, _), ids in zip(mine, listed, strict=True)
            for d in ids
        ]  # fmt: skip
        async with redis.pipeline(transaction=False) as pipe:
            for _, delivery_id in candidates:
                pipe.hmget(space.delivery(delivery_id), "state", "attempts", "created_at")
            states = await pipe.execute()
        for (tracking_id, delivery_id), (state, attempts, made) in zip(
            candidates, states, strict=True
        ):
            if state is None or not since <= float(made or 0) <= until:
                continue
            if wanted(state.decode(), int(attempts or 0)):
                found.append(Found(delivery_id, tracking_id, state.decode()))
                if len(found) == limit:
                    return found, True
    return found, len(tasks) == scan


async def keep(redis: Redis, space: keys.Keyspace, client_id: str, delivery_ids: list[str]) -> str:
    """Keep a recovery's deliveries for a day; its id."""
    recovery_id = new_id("rec")
    await redis.set(
        space.recovery(client_id, recovery_id), json.dumps(delivery_ids), ex=RECOVERY_KEPT
    )
    return recovery_id


async def progress(
    redis: Redis, space: keys.Keyspace, client_id: str, recovery_id: str
) -> dict[str, int] | None:
    """How a recovery's deliveries stand now, by state; None if there is no such recovery."""
    raw = await redis.get(space.recovery(client_id, recovery_id))
    if raw is None:
        return None
    ids = json.loads(raw)
    async with redis.pipeline(transaction=False) as pipe:
        for delivery_id in ids:
            pipe.hget(space.delivery(delivery_id), "state")
        states = await pipe.execute()
    counts: dict[str, int] = {}
    for state in states:
        name = state.decode() if state is not None else "expired"
        counts[name] = counts.get(name, 0) + 1
    return counts
