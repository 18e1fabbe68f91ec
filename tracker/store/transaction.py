"""Optimistic transactions: WATCH what the change depends on, MULTI/EXEC, again on conflict."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

T = TypeVar("T")


async def transaction(redis: Redis, attempt: Callable[[Pipeline], Awaitable[T]]) -> T:
    """Run `attempt` (which WATCHes, reads, then queues writes after `multi()`) until no
    watched key changed under it; returns what the successful attempt returned."""
    while True:
        async with redis.pipeline(transaction=True) as pipe:
            try:
                return await attempt(pipe)
            except WatchError:
                continue
