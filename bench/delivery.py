"""Delivery throughput: one worker's webhooks per second to a fast receiver, beside a plain
aiohttp POST loop to the same receiver, in one run.

The receiver (aiohttp, its own process) answers 204 at once. The tracker's deliveries are made
ready in Redis first (N tasks ended, one delivery each, due now), then one worker
process starts: the rate is counted from its first webhook to its last, so start-up is left
out. The ceiling is 100 concurrent POSTs of the same size from one asyncio loop with nothing
else on it; the worker may keep as many attempts in flight to the receiver's one origin
(TRACKER_DELIVERY_PER_ORIGIN=100, the default being 10). Target (issue 11): the worker at
>= 50 % of the ceiling.

A third sender, the plain loop recording each POST (one batched script call the size of an
attempt's record after each), shows what a durable record per webhook costs on its own. Each
row also gives the CPU its process spent per webhook, and that as a multiple of the plain
loop's. `python -m bench delivery [N] [ROUNDS]`: ROUNDS (3) rounds of plain loop, worker and
recording loop, each compared with the plain loops right before and after it; the table
gives the medians, since this machine's speed swings from one round to the next.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import redis

from bench.harness import Process, rig, wait_until_up
from tracker.core import events
from tracker.core.records import (
    FINAL_EVENTS,
    EventType,
    Result,
    Subscription,
    SubscriptionState,
    TaskState,
)
from tracker.core.vault import vault_of
from tracker.embedded_redis import EmbeddedRedis, free_port
from tracker.store import Store, connection
from tracker.store.batching import ScriptBatch

# The ceiling's senders, and the attempts the worker may have in flight to the one receiver.
CONCURRENCY = 100

DONE = Result(TaskState.COMPLETED, "completed", video_url="https://cdn.test/v.mp4")


def sample_body() -> bytes:
    """A body the size of the worker's webhooks here (about 380 bytes), for the plain loop."""
    sub = Subscription(
        "sub_0123456789abcdef", f"veo3.1-fast:{int(time.time())}-delivery000000", "client",
        "http://127.0.0.1/hooks", {"n": 0}, tuple(FINAL_EVENTS), SubscriptionState.ACTIVE,
        time.time(),
    )  # fmt: skip
    body = events.final_body(EventType.COMPLETED, time.time(), DONE, {"status": "completed"}, sub)
    assert body is not None
    return body


def received(http: httpx.Client) -> tuple[int, float]:
    """How many webhooks the receiver has answered, and the seconds from the first to the
    latest."""
    counted = http.get("/count").json()
    return int(counted["count"]), float(counted["latest"]) - float(counted["first"])


# The keys and arguments of one attempt's record (`scripts.CONCLUDE_ATTEMPT`: nine keys,
# sixteen arguments), for the plain loop that also records: what a durable record per POST
# costs on its own, before any reading, signing or counting.
RECORD_KEYS = [f"bench:record:{i}" for i in range(9)]
RECORD_ARGS: list[str | int] = [
    "msg_0123456789abcdef", 0, 0, '{"at":1.5,"status_code":204}', "delivered", "", 604800, 0,
    "client", "http://127.0.0.1:1", "msg_0123456789abcdef", 0, "1764000000.123", 5, 30, 600,
]  # fmt: skip


async def ceiling(
    url: str, seconds: float, concurrency: int = CONCURRENCY, record_to: str | None = None
) -> tuple[float, float]:
    """POSTs per second from one loop of `concurrency` senders, over `seconds`, and the CPU
    milliseconds this process spent per POST. With `record_to` (a Redis URL), each POST is
    followed by one script call the size of an attempt's record, batched as the worker's."""
    sent = 0
    redis = connection.connect(record_to) if record_to else None
    record = ScriptBatch(redis, "return 1") if redis else None
    headers = {"content-type": "application/json", "webhook-id": "msg_x",
               "webhook-timestamp": "1", "webhook-signature": "v1," + "A" * 44}  # fmt: skip
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        stop, body = time.monotonic() + seconds, sample_body()

        async def sender() -> None:
            nonlocal sent
            while time.monotonic() < stop:
                async with http.post(url + "/hooks", data=body, headers=headers) as answer:
                    await answer.read()
                if record is not None:
                    await record(keys=RECORD_KEYS, args=RECORD_ARGS)
                sent += 1

        started, cpu = time.monotonic(), time.process_time()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        rate, cpu_ms = (
            sent / (time.monotonic() - started),
            (time.process_time() - cpu) * 1000 / sent,
        )
    if redis is not None:
        await redis.aclose()
    return rate, cpu_ms


def redis_cpu(url: str) -> float:
    """The Redis server's user and system CPU seconds so far."""
    with redis.Redis.from_url(url) as conn:
        found = conn.info("cpu")
    return float(found["used_cpu_user"]) + float(found["used_cpu_sys"])


def tracker_rate(
    n: int, receiver: str, *, record_answers: bool = True
) -> tuple[float, float, float]:
    """Webhooks per second of one worker process, for `n` deliveries ready in Redis, the CPU
    milliseconds it spent per webhook (from its first webhook to its last), and Redis's CPU
    microseconds per webhook over the same span (what bounds a fleet of workers); with or
    without each attempt's request and answer kept (TRACKER_RECORD_ANSWERS)."""
    with rig(
        delivery_per_origin=CONCURRENCY, deliveries_per_client=CONCURRENCY,
        record_answers=record_answers,
    ) as r:  # fmt: skip
        settings = r.settings

        async def prepare() -> None:
            pool = connection.connect(r.redis.url)
            store = Store(pool, vault=vault_of(settings))
            client, _ = await store.clients.create("bench", time.time())
            now = time.time()
            for i in range(n):
                task_id = f"veo3.1-fast:{int(now)}-delivery{i:06d}"
                await store.shards[0].registrations.register(
                    client_id=client.id, task_id=task_id, callback_url=receiver + "/hooks",
                    metadata={"n": i}, events=list(FINAL_EVENTS), now=now,
                    deadline_at=now + 3600, first_poll_at=now + 3600,
                )  # fmt: skip
                await store.shards[0].polls.finish(  # its delivery is now due, for the dispatcher
                    task_id, result=DONE, upstream={"status": "completed"}, polls=1, now=now
                )
            await pool.aclose()

        asyncio.run(prepare())
        with httpx.Client(base_url=receiver) as http:
            http.post("/reset")
            worker = r.start("worker", "worker")
            deadline = time.monotonic() + 600
            # Webhooks so far, and the worker's and Redis's CPU then.
            first: tuple[int, float, float] | None = None
            while (count := received(http)[0]) < n:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {count}/{n} webhooks")
                if first is None and count:
                    first = (count, worker.cpu_seconds(), redis_cpu(r.redis.url))
                time.sleep(0.25)  # the receiver times the arrivals: asking costs nothing
            if first is None:
                return (n - 1) / received(http)[1], 0.0, 0.0
            sent = n - first[0]
            cpu_ms = (worker.cpu_seconds() - first[1]) * 1000 / sent
            redis_us = (redis_cpu(r.redis.url) - first[2]) * 1e6 / sent
            return (n - 1) / received(http)[1], cpu_ms, redis_us


def run(n: int = 5000, rounds: int = 3) -> dict[str, float]:
    port = free_port()
    receiver_url = f"http://127.0.0.1:{port}"
    popen = subprocess.Popen(
        [sys.executable, "-m", "bench.fast_receiver", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    process = Process(popen, "receiver")
    # Per round: (rate, CPU ms each) of the plain loop before, the worker, the recording loop.
    found: list[tuple[tuple[float, float], ...]] = []
    per_webhook: list[float] = []  # Redis CPU µs per webhook, each round
    try:
        wait_until_up(receiver_url + "/count")
        # Rounds of plain loop, worker, recording loop, and a plain loop to end: each round is
        # compared with the mean of the plain loops right before and right after it, since
        # this machine's speed drifts within a run, and the medians of the rounds are kept.
        plain = asyncio.run(ceiling(receiver_url, 4.0))
        for _ in range(rounds):
            *worker, redis_us = tracker_rate(n, receiver_url)
            *bare, _ = tracker_rate(n, receiver_url, record_answers=False)
            per_webhook.append(redis_us)
            with tempfile.TemporaryDirectory() as data, EmbeddedRedis(Path(data)) as redis:
                floor = asyncio.run(ceiling(receiver_url, 4.0, record_to=redis.url))
            after = asyncio.run(ceiling(receiver_url, 4.0))
            found.append((_mean(plain, after), floor, (worker[0], worker[1]), (bare[0], bare[1])))
            plain = after
    finally:
        process.stop()
    print(f"Delivery throughput: {n} webhooks from one worker process, beside a plain aiohttp "
          f"POST loop ({CONCURRENCY} concurrent; the worker {CONCURRENCY} per origin), "
          f"same receiver, same run; medians of {rounds} rounds")  # fmt: skip
    names = [
        "plain aiohttp loop", "plain loop + a record each", "one tracker worker",
        "  answers not recorded",
    ]  # fmt: skip
    header = f"{'sender':<28}{'webhooks/s':>12}{'vs ceiling':>12}{'CPU ms each':>13}"
    print(f"{header}{'x plain CPU':>13}")
    figures = {}
    for i, name in enumerate(names):
        rate = statistics.median(r[i][0] for r in found)
        share = statistics.median(r[i][0] / r[0][0] for r in found)
        cpu = statistics.median(r[i][1] for r in found)
        times = statistics.median(r[i][1] / r[0][1] for r in found)
        print(f"{name:<28}{rate:>12.0f}{share:>12.2f}{cpu:>13.3f}{times:>13.2f}")
        figures[name] = share
    shares = ", ".join(f"{r[2][0] / r[0][0]:.2f}" for r in found)
    print(f"  (the worker's share of the ceiling in each round: {shares})")
    print("  Redis CPU per webhook (the worker's, answers recorded): "
          + ", ".join(f"{u:.0f} µs" for u in per_webhook)
          + f" (median {statistics.median(per_webhook):.0f} µs: one Redis core would carry "
          f"{1e6 / statistics.median(per_webhook):,.0f} webhooks/s)")  # fmt: skip
    # What keeping each attempt's request and answer costs (issue 25: at most 10 %).
    costs = [1 - r[2][0] / r[3][0] for r in found]
    cpu = [r[2][1] / r[3][1] - 1 for r in found]
    print("  recording the answers: " + ", ".join(f"{c:+.1%}" for c in costs)
          + " of the worker's webhooks/s, " + ", ".join(f"{c:+.1%}" for c in cpu)
          + f" CPU per webhook, round by round (median {statistics.median(costs):+.1%} "
          f"and {statistics.median(cpu):+.1%})")  # fmt: skip
    return figures


def _mean(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
