"""One Lua script's calls, made by many coroutines within a moment (`LINGER`), sent to Redis
together: one command, one round trip, one write and one read for all of them.

Why: a worker concludes up to `worker_concurrency` delivery attempts at once, and each record
is a script call; made one by one, the round trips (a socket write, a read, redis-py's
connection bookkeeping) cost more CPU than the POSTs they record. Sent as one pipeline, each
call still cost redis-py a command to pack and an answer to parse in Python; so the calls go
as one call of a wrapper script (`batched`) that runs the script once per call, in order, and
answers a list. Each caller still gets its own answer (or its own error: each run is
protected, so one call's error never touches another's), so a caller reads exactly as if it
had called the script alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

Call = tuple[Sequence[str], Sequence[str | int | float], "asyncio.Future[Any]"]

# Calls sent in one batch at most; more wait for the next. The batch runs as one script, and
# Redis serves nobody else meanwhile: 200 records take it about 3.5 ms (`bench records`).
MOST = 200

# How long a batch waits for more calls after its first. Attempts end one or two per turn of
# the event loop (their answers arrive apart), so a batch of one turn held about one call:
# measured with `bench delivery`, a POST loop recording each POST this way spent 0.31 ms of
# CPU a POST with no wait (1.1 calls a pipeline) and 0.18 ms with 1 ms (25 calls), against
# 0.17 ms for the POSTs alone. A record 2 ms later is nothing to a webhook or a poll.
LINGER = 0.002


def batched(script: str) -> str:
    """A script that runs `script` once per call it is given, each on its own KEYS and ARGV,
    and answers the list of their answers (an error in place of a call that failed).

    Its ARGV: the number of calls, then each call's number of keys and of arguments, then
    every call's arguments in order; its KEYS: every call's keys in order."""
    return f"""
local function call(KEYS, ARGV)
{script}
end
local n, answers = tonumber(ARGV[1]), {{}}
local key, arg = 0, 1 + 2 * n
for i = 1, n do
  local keys, args = {{}}, {{}}
  for j = 1, tonumber(ARGV[2 * i]) do keys[j] = KEYS[key + j] end
  for j = 1, tonumber(ARGV[2 * i + 1]) do args[j] = ARGV[arg + j] end
  key, arg = key + #keys, arg + #args
  local ok, answer = pcall(call, keys, args)
  if not ok then
    -- Redis 7 raises an error reply as a table, Redis 6 as its text.
    answer = type(answer) == 'table' and answer or {{err = tostring(answer)}}
  elseif answer == nil then
    answer = false  -- a nil would end the list
  end
  answers[i] = answer
end
return answers
"""


class ScriptBatch:
    """Call it as a registered script (`await batch(keys=..., args=...)`): calls made within
    `linger` seconds of the first go out as one call of `batched(script)`. It belongs to one
    event loop, as the `Store` that holds it does. A caller cancelled while its call is out
    (a time-out) may still see it run, as with any script call: the scripts batched here are
    compare-and-set, so a late run writes nothing stale."""

    def __init__(self, redis: Redis, script: str, linger: float = LINGER) -> None:
        self.redis = redis
        self.script = redis.register_script(batched(script))
        self.linger = linger
        self.waiting: list[Call] = []
        self.due: asyncio.TimerHandle | None = None

    async def __call__(self, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.waiting.append((keys, args, future))
        if len(self.waiting) >= MOST:
            self._flush()  # a full batch need not wait
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
            answers = await self._batched(calls)
        except BaseException as exc:  # the whole batch failed: each caller sees why
            for _, _, future in calls:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, future), answer in zip(calls, answers, strict=True):
            if future.done():  # its caller was cancelled (a time-out) meanwhile
                continue
            if isinstance(answer, ResponseError):
                future.set_exception(answer)
            else:
                future.set_result(answer)

    async def _batched(self, calls: list[Call]) -> list[Any]:
        counts: list[int] = [len(calls)]
        keys: list[str] = []
        args: list[str | int | float] = []
        for call_keys, call_args, _ in calls:
            counts += (len(call_keys), len(call_args))
            keys += call_keys
            args += call_args
        # redis-py loads the script again if Redis lost it (a restart, a failover).
        return list(await self.script(keys=keys, args=[*counts, *args]))


def _retrieved(task: asyncio.Task[None]) -> None:
    # Errors were handed to the callers; this only keeps asyncio from reporting them twice.
    if not task.cancelled():
        task.exception()
