"""A token bucket in Redis, shared by every worker that polls with one QuickRouter key."""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

from tracker import keys

# Refill by the time elapsed on Redis's own clock (one clock for the whole fleet), take one
# token if there is one, and answer how long to wait for the next one otherwise.
_TAKE = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return tostring(wait)
"""


class UpstreamBucket:
    """`take()` answers 0 when a request may go now, else the seconds to wait."""

    def __init__(self, redis: Redis, api_key: str | None, rate: float, burst: int) -> None:
        name = hashlib.sha256((api_key or "").encode()).hexdigest()[:16]
        self.key = keys.upstream_bucket(name)
        self.rate = rate
        self.burst = max(1, burst)
        self.script = redis.register_script(_TAKE)

    async def take(self) -> float:
        if self.rate <= 0:
            return 0.0
        wait = await self.script(keys=[self.key], args=[self.rate, self.burst])
        return float(wait)
