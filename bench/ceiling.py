"""Ceilings: how fast this machine can make the tracker's GETs and run arq jobs at all.

In one run: plain aiohttp, httpx's default transport and httpx over aiohttp making the same
GET against the simulator; arq running no-op jobs; and one tracker worker process polling
tasks that are always due. The worker's polls/s is shown as a fraction of each ceiling.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx
from arq.connections import create_pool
from arq.worker import Worker
from httpx_aiohttp import AiohttpTransport

from bench.harness import SIM_KEY, Rig, rig
from tracker.core.vault import vault_of
from tracker.store import Store, connection

SECONDS = 5.0
CONCURRENCY = 64


async def _rate(call: Callable[[], Awaitable[None]], seconds: float = SECONDS) -> float:
    """Calls per second that CONCURRENCY loops of `call` reach in `seconds`."""
    done = 0
    stop = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal done
        while time.monotonic() < stop:
            await call()
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(CONCURRENCY)))
    return done / (time.monotonic() - started)


async def aiohttp_rate(url: str) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:

        async def get() -> None:
            async with session.get(url, headers={"authorization": f"Bearer {SIM_KEY}"}) as r:
                await r.read()

        return await _rate(get)


async def httpx_rate(url: str, transport: httpx.AsyncBaseTransport | None) -> float:
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(transport=transport, limits=limits) as http:

        async def get() -> None:
            await http.get(url, headers={"authorization": f"Bearer {SIM_KEY}"})

        return await _rate(get)


async def noop(ctx: dict[str, Any]) -> None:
    """The job of the arq ceiling: nothing."""


async def arq_rate(redis_url: str, jobs: int = 5000) -> float:
    pool = await create_pool(connection.redis_settings(redis_url))
    for i in range(jobs):
        await pool.enqueue_job("noop", _job_id=f"noop-{i}")
    worker = Worker(
        functions=[noop], redis_pool=pool, burst=True, max_jobs=100, poll_delay=0.01,
        keep_result=0, handle_signals=False,
    )  # fmt: skip
    started = time.monotonic()
    await worker.async_run()
    elapsed = time.monotonic() - started
    await pool.aclose()
    return jobs / elapsed


def tracker_rate(r: Rig, tasks: int = 3000, seconds: float = 10.0) -> float:
    """Polls/s of one worker process on tasks that are always due."""
    specs: list[dict[str, object]] = [{"scenario": "never_ends"} for _ in range(tasks)]
    ids = [str(t["task_id"]) for t in r.simulator.script(specs)]

    async def register() -> None:
        pool = connection.connect(r.redis.url)
        store = Store(pool, vault=vault_of(r.settings))
        client, _ = await store.clients.create("bench", time.time())
        now = time.time()
        for task_id in ids:
            await store.shards[0].registrations.register(
                client_id=client.id, task_id=task_id, callback_url="http://127.0.0.1:9/h",
                metadata={}, events=[], now=now, deadline_at=now + 3600, first_poll_at=now,
            )  # fmt: skip
        await pool.aclose()

    asyncio.run(register())
    worker = r.start("worker", "worker")
    time.sleep(2.0)  # let it reach its pace
    before = sum(int(t["requests"]) for t in r.simulator.tasks().values())  # type: ignore[call-overload]
    cpu_before = worker.cpu_seconds()
    time.sleep(seconds)
    after = sum(int(t["requests"]) for t in r.simulator.tasks().values())  # type: ignore[call-overload]
    cpu = worker.cpu_seconds() - cpu_before
    worker.stop()
    print(f"  (worker CPU {cpu / seconds:.0%} of a core while polling)")
    return (after - before) / seconds


def run() -> dict[str, float]:
    with rig(poll_first_delay=0.001, poll_max_delay=0.001, poll_jitter=0.0,
             queue_poll_interval=0.01, worker_concurrency=200) as r:  # fmt: skip
        task_id = str(r.simulator.script([{"scenario": "never_ends"}])[0]["task_id"])
        url = f"{r.simulator.url}/v1/video/query?id={task_id}"
        rates = {
            "httpx GET loop (default transport)": asyncio.run(httpx_rate(url, None)),
            "httpx GET loop (aiohttp transport)": asyncio.run(httpx_rate(url, AiohttpTransport())),
            "arq no-op jobs": asyncio.run(arq_rate(r.redis.url)),
        }
        # The plain loop right before and right after the worker, which is compared with
        # their mean: this machine's speed drifts within a run.
        before = asyncio.run(aiohttp_rate(url))
        rates["tracker worker polls (1 process)"] = tracker_rate(r)
        after = asyncio.run(aiohttp_rate(url))
    print(f"  (plain aiohttp GET loop: {before:.0f}/s before the worker, {after:.0f}/s after)")
    rates = {"plain aiohttp GET loop (mean)": (before + after) / 2, **rates}
    polls = rates["tracker worker polls (1 process)"]
    print(f"Ceilings on this machine ({CONCURRENCY} concurrent, {SECONDS:g} s each), "
          "against the simulator on 127.0.0.1")  # fmt: skip
    print(f"{'what':<38}{'per second':>12}{'tracker polls/s as share':>27}")
    for name, rate in rates.items():
        print(f"{name:<38}{rate:>12.0f}{polls / rate:>27.0%}")
    return rates
