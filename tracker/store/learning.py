"""What finished tasks taught, per model (see `tracker.core.estimates`), shared in Redis."""

from __future__ import annotations

import json
from collections.abc import Sequence

from redis.asyncio import Redis

from tracker.core.estimates import CONFIDENT_SAMPLES, SAMPLE_LIMIT, TOTAL
from tracker.store import keys

# Models a process keeps what they taught in memory for: a model is a task id's prefix, which
# clients write, so the cache must not grow with whatever prefixes they send.
CACHED_MODELS = 256


def read_again_after(learned: dict[str, list[float]], refresh: float) -> float:
    """How long a process keeps what it read of a model: `refresh`, or a fifteenth of it
    while fewer than `CONFIDENT_SAMPLES` tasks taught the model."""
    # While a model has too few samples to be trusted, look again soon: it is learning, and
    # each finished task may be the one that lets its polls follow what it learned.
    young = len(learned.get(TOTAL, ())) < CONFIDENT_SAMPLES
    return refresh / 15 if young else refresh


class Learning:
    def __init__(self, redis: Redis, refresh: float = 15.0) -> None:
        self.redis = redis
        self.refresh = refresh
        self._cache: dict[str, tuple[float, dict[str, list[float]]]] = {}

    async def learn(self, model: str, samples: Sequence[tuple[str, float]]) -> None:
        """Keep what one completed task of `model` teaches (the latest few hundred)."""
        if not samples:
            return
        key = keys.HOME.learned(model)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lpush(key, json.dumps(dict(samples)))
            pipe.ltrim(key, 0, SAMPLE_LIMIT - 1)
            await pipe.execute()

    async def learned(self, model: str) -> dict[str, list[float]]:
        """Every sample kept for `model`, by status (and `_total`)."""
        found: dict[str, list[float]] = {}
        for raw in await self.redis.lrange(keys.HOME.learned(model), 0, SAMPLE_LIMIT - 1):
            for name, value in json.loads(raw).items():
                found.setdefault(name, []).append(float(value))
        return found

    async def cached(self, model: str, now: float) -> dict[str, list[float]]:
        """`learned(model)`, re-read from Redis at most every `refresh` seconds per process."""
        cached = self._cache.get(model)
        if cached is None or now - cached[0] > read_again_after(cached[1], self.refresh):
            cached = (now, await self.learned(model))
            self._cache.pop(model, None)  # so the oldest read is first, and is let go first
            if len(self._cache) >= CACHED_MODELS:
                del self._cache[next(iter(self._cache))]
            self._cache[model] = cached
        return cached[1]
