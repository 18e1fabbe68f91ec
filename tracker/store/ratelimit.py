"""Rates shared by the fleet: the token bucket of a QuickRouter key, and the calls a client
may make (registrations per second, redeliveries per minute)."""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

from tracker.store import keys, scripts


class UpstreamBucket:
    """`take()` answers 0 when a request may go now, else the seconds to wait."""

    def __init__(self, redis: Redis, api_key: str | None, rate: float, burst: int) -> None:
        name = hashlib.sha256((api_key or "").encode()).hexdigest()[:16]
        self.key = keys.HOME.upstream_bucket(name)
        self.rate = rate
        self.burst = max(1, burst)
        self.script = redis.register_script(scripts.TAKE_FROM_BUCKET)

    async def take(self) -> float:
        if self.rate <= 0:
            return 0.0
        wait = await self.script(keys=[self.key], args=[self.rate, self.burst])
        return float(wait)


async def count(redis: Redis, key: str, window: int) -> int:
    """Count one call in the fixed window that `key` names; the calls counted in it so far."""
    return int(await redis.register_script(scripts.COUNT_IN_WINDOW)(keys=[key], args=[window + 1]))


async def admit(redis: Redis, key: str, limit: int, window: int) -> bool:
    """Count one call in the fixed window that `key` names; False when it passes `limit`."""
    return await count(redis, key, window) <= limit


async def admit_registration(
    redis: Redis, space: keys.Keyspace, client_id: str, now: float, per_second: int
) -> bool:
    """Count one registration attempt; False when the client is over its rate."""
    return await admit(redis, space.registrations(client_id, int(now)), per_second, 1)


async def admit_redelivery(
    redis: Redis, space: keys.Keyspace, client_id: str, now: float, per_minute: int
) -> bool:
    """Count one redeliver call; False when the client is over its rate."""
    return await admit(redis, space.redeliveries(client_id, int(now // 60)), per_minute, 60)
