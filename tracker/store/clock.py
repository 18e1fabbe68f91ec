"""One clock for the fleet: Redis's.

Decisions that cross processes compare times written by one process with times read by
another: a task's deadline (set by the API, checked by a worker), the leases and due times of
the due sets, a secret's overlap, a circuit's reopening. Each process's own clock may be off
by seconds or, in a badly kept container, by minutes; a worker 60 s ahead would time tasks out
early and claim work another worker still holds. So every process reads Redis's `TIME` at
start and every `SYNC_EVERY` seconds, keeps the offset to its own clock, and tells time as
"its clock + offset": the one clock is Redis's, to within half a round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("tracker.clock")

# Clocks drift by parts per million; a minute between readings keeps the error far below
# the lease and the poll intervals it could matter to.
SYNC_EVERY = 60.0


class Clock:
    """Redis's time, told from this process's own clock and a measured offset.

    `skew` is added to this process's clock (TRACKER_CLOCK_SKEW): a wrong clock, for testing
    that the offset corrects it.
    """

    def __init__(self, skew: float = 0.0) -> None:
        self.skew = skew
        self.offset = 0.0
        self.synced = False

    def local(self) -> float:
        """This process's own clock (wrong by `skew`)."""
        return time.time() + self.skew

    def now(self) -> float:
        """The fleet's time, in seconds since the epoch."""
        return self.local() + self.offset

    async def sync(self, redis: Redis) -> float:
        """Read Redis's clock once and keep the offset to ours; returns the offset."""
        before = self.local()
        seconds, micros = await redis.time()
        after = self.local()
        # The server read its clock somewhere within the round trip: its middle is the best
        # guess, wrong by half the round trip at most.
        self.offset = seconds + micros / 1e6 - (before + after) / 2
        self.synced = True
        return self.offset

    async def keep_synced(self, redis: Redis, every: float = SYNC_EVERY) -> None:
        """Sync every `every` seconds (every second until a first reading succeeds) until
        cancelled; a failed reading keeps the last offset."""
        while True:
            await asyncio.sleep(every if self.synced else 1.0)
            await self._try_sync(redis)

    async def start(self, redis: Redis) -> asyncio.Task[None]:
        """Sync now if Redis answers, then keep in sync in the background; cancel the
        returned task (`stop`) to end it."""
        await self._try_sync(redis)
        return asyncio.create_task(self.keep_synced(redis))

    async def _try_sync(self, redis: Redis) -> None:
        try:
            offset = await self.sync(redis)
        except (RedisError, OSError):
            log.warning("reading Redis's clock failed; keeping the last offset")
            return
        if abs(offset) > 1.0:
            log.warning("this process's clock is %.1f s off Redis's; using Redis's", -offset)


async def stop(task: asyncio.Task[None] | None) -> None:
    """Stop a `Clock.start` task."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
