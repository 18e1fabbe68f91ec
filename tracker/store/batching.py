"""One Lua script's calls, made by many coroutines within a moment (`LINGER`), sent to Redis
together: one pipeline, one round trip, one write and one read for all of them.

Why: a worker concludes up to `worker_concurrency` delivery attempts at once, and each record
is a script call; made one by one, the round trips (a socket write, a read, redis-py's
connection bookkeeping) cost more CPU than the POSTs they record. Each caller still gets its
own answer (or its own error), so a caller reads exactly as if it had called the script alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

Call = tuple[Sequence[str], Sequence[str | int | float], "asyncio.Future[Any]"]

# Calls sent in one pipeline at most; more wait for the next.
MOST = 500

# How long a batch waits for more calls after its first. Attempts end one or two per turn of
# the event loop (their answers arrive apart), so a batch of one turn held about one call:
# measured with `bench delivery`, a POST loop recording each POST this way spent 0.31 ms of
# CPU a POST with no wait (1.1 calls a pipeline) and 0.18 ms with 1 ms (25 calls), against
# 0.17 ms for the POSTs alone. A record 2 ms later is nothing to a webhook or a poll.
LINGER = 0.002


class ScriptBatch:
    """Call it as a registered script (`await batch(keys=..., args=...)`): calls made within
    `linger` seconds of the first go out in one pipeline. It belongs to one event loop, as the
    `Store` that holds it does. A caller cancelled while its call is out (a time-out) may
    still see it run, as with any script call: the scripts batched here are compare-and-set,
    so a late run writes nothing stale."""

    def __init__(self, redis: Redis, script: str, linger: float = LINGER) -> None:
        self.redis = redis
        self.script = redis.register_script(script)
        self.linger = linger
        self.waiting: list[Call] = []
        self.due: asyncio.TimerHandle | None = None

    async def __call__(self, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.waiting.append((keys, args, future))
        if len(self.waiting) >= MOST:
            self._flush()  # a full pipeline need not wait
        elif len(self.waiting) == 1:
            self.due = loop.call_later(self.linger, self._flush)
        return await future

    def _flush(self) -> None:
        if self.due is not None:
            self.due.cancel()
            self.due = None
        while self.waiting:
            calls, self.waiting = self.waiting[:MOST], self.waiting[MOST:]
            task = asyncio.create_task(self._send(calls))
            task.add_done_callback(_retrieved)

    async def _send(self, calls: list[Call]) -> None:
        try:
            answers = await self._pipelined(calls)
            missing = [i for i, a in enumerate(answers) if isinstance(a, NoScriptError)]
            if missing:  # the script cache was emptied (a restart, a failover): load, again
                await self.script.registered_client.script_load(self.script.script)
                again = await self._pipelined([calls[i] for i in missing])
                for i, answer in zip(missing, again, strict=True):
                    answers[i] = answer
        except BaseException as exc:  # the whole pipeline failed: each caller sees why
            for _, _, future in calls:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, future), answer in zip(calls, answers, strict=True):
            if future.done():  # its caller was cancelled (a time-out) meanwhile
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)

    async def _pipelined(self, calls: list[Call]) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys, args, _ in calls:
                pipe.evalsha(self.script.sha, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))


def _retrieved(task: asyncio.Task[None]) -> None:
    # Errors were handed to the callers; this only keeps asyncio from reporting them twice.
    if not task.cancelled():
        task.exception()
