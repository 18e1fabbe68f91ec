"""One Lua script's calls, made by many coroutines in the same turn of the event loop, sent to
Redis together: one pipeline, one round trip, one write and one read for all of them.

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


class ScriptBatch:
    """Call it as a registered script (`await batch(keys=..., args=...)`): calls made while
    the event loop is busy with other callers go out in one pipeline. It belongs to one event
    loop, as the `Store` that holds it does. A caller cancelled while its call is out (a
    time-out) may still see it run, as with any script call: the scripts batched here are
    compare-and-set, so a late run writes nothing stale."""

    def __init__(self, redis: Redis, script: str) -> None:
        self.redis = redis
        self.script = redis.register_script(script)
        self.waiting: list[Call] = []

    async def __call__(self, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting.append((keys, args, future))
        if len(self.waiting) == 1:
            # Runs once the coroutines ready in this turn have had their say (and queued
            # their calls): the batch is whatever the loop had ready at once, never a wait.
            asyncio.get_running_loop().call_soon(self._flush)
        return await future

    def _flush(self) -> None:
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
