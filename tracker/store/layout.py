"""The records' key layout, and moving a Redis from the one before it.

Before hash tags (`keys.PREFIX`), every key began with `qrt:`. A Redis that still holds such
records is said so at start-up (`LayoutOutdated`, from `Identity.establish`) rather than
served as if it were empty; `qrtracker redis migrate` renames its keys in place, with the
fleet stopped. Renaming keeps each key's value and time to live, and the two keys that tell
an old layout (its epoch and its client set) go last: a migration cut short leaves the Redis
still told as old, and running it again goes on where it stopped.
"""

from __future__ import annotations

from redis.asyncio import Redis

from tracker.store import keys
from tracker.store.cluster import on_cluster

OLD_PREFIX = "qrt:"
# What every Redis the earlier version served holds (its epoch, its client set), read in one
# command at each process's start.
OLD_MARKERS = (OLD_PREFIX + "identity", OLD_PREFIX + "clients")
BATCH = 500  # keys renamed per round trip


def new_name(old_key: str) -> str:
    """The name in this layout of a key of the one before."""
    return keys.PREFIX + old_key.removeprefix(OLD_PREFIX)


async def outdated(redis: Redis) -> bool:
    """Whether this Redis holds records in the layout before hash tags. Never a Redis
    Cluster's: the earlier version refused to run on one."""
    return not on_cluster(redis) and int(await redis.exists(*OLD_MARKERS)) > 0


async def migrate(redis: Redis, limit: int | None = None) -> int:
    """Rename every key of the earlier layout to its name in this one; returns how many were
    renamed. `limit` stops after about that many (a migration cut short, for the tests)."""
    if on_cluster(redis):
        return 0
    moved = 0
    batch: list[str] = []
    async for raw in redis.scan_iter(match=OLD_PREFIX + "*", count=BATCH):
        key = raw.decode() if isinstance(raw, bytes) else raw
        if key not in OLD_MARKERS:
            batch.append(key)
        if len(batch) >= BATCH:
            moved += await _rename(redis, batch)
            batch = []
            if limit is not None and moved >= limit:
                return moved
    return moved + await _rename(redis, [*batch, *OLD_MARKERS])


async def _rename(redis: Redis, old_keys: list[str]) -> int:
    async with redis.pipeline(transaction=False) as pipe:
        for key in old_keys:
            pipe.rename(key, new_name(key))
        # A key that expired since the scan (or a marker this Redis never had) is no error.
        done = await pipe.execute(raise_on_error=False)
    return sum(1 for answer in done if not isinstance(answer, Exception))
