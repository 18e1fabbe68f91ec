"""The fleet's clock: Redis's, told from a process's own clock and a measured offset."""

from __future__ import annotations

import asyncio
import time

from tracker.store.clock import Clock, stop
from tracker.store.connection import connect


def test_a_wrong_clock_is_corrected_from_redis(redis_url: str) -> None:
    async def body() -> None:
        redis = connect(redis_url)
        try:
            clock = Clock(skew=3600.0)
            assert abs(clock.now() - time.time() - 3600) < 1  # wrong until it has read Redis's
            syncing = await clock.start(redis)
            assert clock.synced
            assert abs(clock.now() - time.time()) < 0.5  # Redis runs on this machine's clock
            assert abs(clock.local() - time.time() - 3600) < 1  # its own clock stays wrong
            await stop(syncing)
            assert syncing.cancelled()
        finally:
            await redis.aclose()

    asyncio.run(body())


def test_a_clock_that_cannot_reach_redis_keeps_its_own_until_it_can() -> None:
    async def body() -> None:
        redis = connect("redis://127.0.0.1:9/0")  # nothing listens on the discard port
        try:
            clock = Clock(skew=5.0)
            syncing = await clock.start(redis)
            assert not clock.synced and clock.offset == 0.0
            assert not syncing.done()  # tries again in the background
            await stop(syncing)
        finally:
            await redis.aclose()

    asyncio.run(body())
