"""Records: the CPU one batched script call costs the caller and Redis, sent as a pipeline of
calls or as one call of the batching wrapper (`tracker.store.batching`), side by side.

100 coroutines each make calls the shape of an attempt's record (`delivery.RECORD_KEYS` and
`RECORD_ARGS`) to an embedded Redis for 1.5 s, the two ways alternately, eight rounds each
(this machine's speed drifts: alternating keeps the two under the same drift).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.delivery import RECORD_ARGS, RECORD_KEYS
from bench.harness import cpu_seconds
from tracker.embedded_redis import EmbeddedRedis
from tracker.store import connection
from tracker.store.batching import LINGER, Call, ScriptBatch

# What a record does, in miniature: one write, a two-number answer.
SCRIPT = "redis.call('SET', KEYS[1], ARGV[1]) return {1, 0}"
CONCURRENCY = 100


class Pipelined(ScriptBatch):
    """The same calls as a pipeline of EVALSHAs: how `ScriptBatch` sent them before."""

    def __init__(self, redis: Any, script: str, linger: float = LINGER) -> None:
        super().__init__(redis, script, linger)
        self.single = redis.register_script(script)

    async def _batched(self, calls: list[Call]) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys, args, _ in calls:
                pipe.evalsha(self.single.sha, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))


async def calls(kind: type[ScriptBatch], url: str, pid: int, seconds: float) -> tuple[float, ...]:
    """Calls per second, and the caller's and Redis's CPU microseconds per call."""
    redis = connection.connect(url)
    batch = kind(redis, SCRIPT)
    await redis.script_load(SCRIPT)
    await batch(RECORD_KEYS, RECORD_ARGS)  # loads the wrapper
    made, stop = 0, time.monotonic() + seconds

    async def caller() -> None:
        nonlocal made
        while time.monotonic() < stop:
            await batch(RECORD_KEYS, RECORD_ARGS)
            made += 1

    cpu, started, server = time.process_time(), time.monotonic(), cpu_seconds(pid)
    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    figures = (
        made / (time.monotonic() - started),
        (time.process_time() - cpu) * 1e6 / made,
        (cpu_seconds(pid) - server) * 1e6 / made,
    )
    await redis.aclose()
    return figures


def run(rounds: int = 8) -> dict[str, float]:
    kinds: dict[str, type[ScriptBatch]] = {
        "a pipeline of calls": Pipelined, "one call": ScriptBatch
    }  # fmt: skip
    found: dict[str, list[tuple[float, ...]]] = {name: [] for name in kinds}
    with tempfile.TemporaryDirectory() as data, EmbeddedRedis(Path(data)) as redis:
        assert redis.process is not None
        for _ in range(rounds):
            for name, kind in kinds.items():
                found[name].append(asyncio.run(calls(kind, redis.url, redis.process.pid, 1.5)))
    print(f"Records: {CONCURRENCY} callers, calls of {len(RECORD_KEYS)} keys and "
          f"{len(RECORD_ARGS)} arguments batched within {LINGER * 1000:.0f} ms; medians of "
          f"{rounds} alternating rounds")  # fmt: skip
    print(f"{'sent as':<22}{'calls/s':>10}{'caller CPU µs':>15}{'Redis CPU µs':>14}")
    medians = {}
    for name, runs in found.items():
        rate, caller, server = (statistics.median(column) for column in zip(*runs, strict=True))
        print(f"{name:<22}{rate:>10.0f}{caller:>15.1f}{server:>14.1f}")
        medians[name] = caller
    return medians
