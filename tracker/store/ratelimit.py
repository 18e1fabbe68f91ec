"""Rates shared by the fleet: the token bucket of a QuickRouter key, and the registrations a
client may make per second."""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

from tracker.store import keys, scripts


class UpstreamBucket:
    """`take()` answers 0 when a request may go now, else the seconds to wait."""

    def __init__(self, redis: Redis, api_key: str | None, rate: float, burst: int) -> None:
        name = hashlib.sha256((api_key or "").encode()).hexdigest()[:16]
        self.key = keys.upstream_bucket(name)
        self.rate = rate
        self.burst = max(1, burst)
        self.script = redis.register_script(scripts.TAKE_FROM_BUCKET)

    async def take(self) -> float:
        if self.rate <= 0:
            return 0.0
        wait = await self.script(keys=[self.key], args=[self.rate, self.burst])
        return float(wait)


async def admit_registration(redis: Redis, client_id: str, now: float, per_second: int) -> bool:
    """Count one registration attempt; False when the client is over its rate."""
    key = keys.registrations(client_id, int(now))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, 2)
        count, _ = await pipe.execute()
    return int(count) <= per_second
