"""Event streams: how many events one API process streams to 100 concurrent SSE clients, and
the latency from a worker recording an event to a streaming client reading it.

Side by side, in one run:
- the tracker: one `qrtracker api` process, 100 clients each following its own feed
  (`GET /v1/events/stream`); events are appended to the feeds the way a worker does
  (`tracker.store.deliveries.stage_new`, in a MULTI), by this process;
- the ceiling for throughput: a trivial sse-starlette app (`bench.trivial_sse`: no Redis, no
  auth, events made in memory) in its own process, to the same 100 readers;
- the baseline for latency: the same clients polling `GET /v1/events` once a second, what
  a client without the stream would do.

The readers run in a process of their own (aiohttp). An event's latency is the time it was
read minus the time Redis appended it (its cursor's milliseconds; same machine, same clock).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection

import aiohttp
import redis

from bench.harness import Process, percentile, rig, wait_until_up
from tracker.core.records import Delivery, DeliveryState, EventType
from tracker.embedded_redis import free_port
from tracker.store import keys
from tracker.store.deliveries import stage_new
from tracker.store.feed import FeedPolicy

CLIENTS = 100
BURST = 200  # events per client in the throughput run
PACED_RATE = 200  # events per second (all clients together) in the latency run
PACED_SECONDS = 5.0
POLL_EVERY = 1.0  # the latency baseline: a client polling the feed this often
BODY = b'{"type":"video.completed","data":{"video_url":"https://cdn.example/' + b"x" * 900 + b'"}}'


@dataclass(frozen=True)
class Reading:
    events: int
    first: float  # when the first event was read
    finished: float  # when the last event was read
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.events / (self.finished - self.first)


async def _follow(
    http: aiohttp.ClientSession, url: str, key: str, expect: int, ready: asyncio.Event,
    counts: list[int], latencies: list[float], first: list[float],
) -> None:  # fmt: skip
    """Read one SSE stream until `expect` events came; `ready` once it is open."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    cursor = b""
    async with http.get(url, headers=headers) as response:
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status}")
        ready.set()
        async for line in response.content:
            if line.startswith(b"id:"):
                cursor = line[3:].strip()
            elif line.startswith(b"event: ready"):
                cursor = b""
            elif line.startswith(b"data:") and cursor:
                if not first:
                    first.append(time.time())
                appended = int(cursor.split(b"-")[0]) / 1000
                latencies.append((time.time() - appended) * 1000)
                counts[0] += 1
                expect -= 1
                if expect == 0:
                    return


async def _read_all(targets: Sequence[tuple[str, str]], expect: int, conn: Connection) -> None:
    counts = [0]
    latencies: list[float] = []
    first: list[float] = []
    readies = [asyncio.Event() for _ in targets]
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        tasks = [
            asyncio.create_task(_follow(http, url, key, expect, ready, counts, latencies, first))
            for (url, key), ready in zip(targets, readies, strict=True)
        ]
        await asyncio.gather(*(r.wait() for r in readies))
        conn.send("ready")
        await asyncio.gather(*tasks)
    conn.send(Reading(counts[0], min(first), time.time(), latencies))


def _reader(targets: list[tuple[str, str]], expect: int, conn: Connection) -> None:
    asyncio.run(_read_all(targets, expect, conn))


def read_in_process(targets: list[tuple[str, str]], expect: int) -> tuple[Connection, object]:
    """Start the readers in a process of their own; returns once every stream is open."""
    here, there = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_reader, args=(targets, expect, there)
    )
    process.start()
    if not here.poll(60) or here.recv() != "ready":
        raise RuntimeError("the readers did not start")
    return here, process


def finish(conn: Connection, process: object) -> Reading:
    if not conn.poll(300):
        raise RuntimeError("the readers did not finish")
    reading: Reading = conn.recv()
    process.join(10)  # type: ignore[attr-defined]
    return reading


def append(redis_url: str, client_ids: list[str], per_client: int, rate: float | None) -> None:
    """Append `per_client` events to each client's feed as a worker does; at `rate` events/s
    in all, or as fast as Redis takes them (in MULTIs of 100)."""
    policy = FeedPolicy(kept=10_000, retention=3600.0)
    events = [
        Delivery(
            id=f"msg_{n}_{c}",
            subscription_id="sub",
            task_id=f"veo3.1-fast:1-{n}",
            event_type=EventType.COMPLETED,
            body=BODY,
            state=DeliveryState.PENDING,
            attempts=0,
            next_attempt_at=0.0,
            created_at=0.0,
            origin="",
            client_id=client,
        )
        for n in range(per_client)
        for c, client in enumerate(client_ids)
    ]
    batch = 1 if rate else 100
    started = time.monotonic()
    with redis.Redis.from_url(redis_url) as conn:
        for start in range(0, len(events), batch):
            if rate:
                wait = started + start / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            pipe = conn.pipeline(transaction=True)
            stage_new(
                pipe, keys.HOME, events[start : start + batch], seq=1, now=time.time(), feed=policy
            )  # type: ignore[arg-type]
            pipe.execute()


def polled_latencies(redis_url: str, url: str, clients: list[dict[str, str]]) -> list[float]:
    """The same paced events read by polling `GET /v1/events` once a second per client, as a
    client without the stream would: the baseline of the stream's latency."""
    expect = round(PACED_RATE * PACED_SECONDS / len(clients))
    here, there = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_poll, args=(url, [c["api_key"] for c in clients], expect, there)
    )
    process.start()
    if not here.poll(60) or here.recv() != "ready":
        raise RuntimeError("the pollers did not start")
    append(redis_url, [c["id"] for c in clients], expect, PACED_RATE)
    return finish(here, process).latencies_ms


def _poll(url: str, keys: list[str], expect: int, conn: Connection) -> None:
    asyncio.run(_poll_all(url, keys, expect, conn))


async def _poll_all(url: str, keys: list[str], expect: int, conn: Connection) -> None:
    latencies: list[float] = []
    first: list[float] = []

    async def poll(http: aiohttp.ClientSession, key: str, after: str) -> None:
        headers = {"authorization": f"Bearer {key}"}
        seen = 0
        while seen < expect:
            async with http.get(url + "/v1/events", params={"after": after, "limit": "100"},
                                headers=headers) as response:  # fmt: skip
                page = await response.json()
            now = time.time()
            for item in page["data"]:
                first.append(now)
                latencies.append((now - int(item["cursor"].split("-")[0]) / 1000) * 1000)
            seen += len(page["data"])
            after = page["next_cursor"]
            await asyncio.sleep(POLL_EVERY)

    async with aiohttp.ClientSession() as http:
        starts = []
        for key in keys:  # start after what the feed holds already
            async with http.get(url + "/v1/events/stream", headers={
                    "authorization": f"Bearer {key}"}) as response:  # fmt: skip
                line = await response.content.readline()
                while not line.startswith(b"id:"):
                    line = await response.content.readline()
                starts.append(line[3:].strip().decode())
        conn.send("ready")
        await asyncio.gather(*(poll(http, k, a) for k, a in zip(keys, starts, strict=True)))
    conn.send(Reading(len(latencies), min(first), time.time(), latencies))


def run() -> dict[str, float]:
    with rig() as r:
        api, url = r.api()
        clients = [r.client() for _ in range(CLIENTS)]
        ids = [c["id"] for c in clients]
        stream = [(url + "/v1/events/stream", c["api_key"]) for c in clients]

        conn, process = read_in_process(stream, BURST)
        append(r.redis.url, ids, BURST, None)
        tracker_rate = finish(conn, process).rate

        port = free_port()
        trivial = Process(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "bench.trivial_sse:app",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ],
            ),
            "trivial",
        )
        try:
            wait_until_up(f"http://127.0.0.1:{port}/healthz")
            plain = [(f"http://127.0.0.1:{port}/stream?n={BURST}", "")] * CLIENTS
            conn, process = read_in_process(plain, BURST)
            ceiling_rate = finish(conn, process).rate
        finally:
            trivial.stop()

        per_client = round(PACED_RATE * PACED_SECONDS / CLIENTS)
        conn, process = read_in_process(stream, per_client)
        append(r.redis.url, ids, per_client, PACED_RATE)
        paced = finish(conn, process)
        polled = polled_latencies(r.redis.url, url, clients)
        cpu, rss = api.cpu_seconds(), api.peak_rss_mb()

    print(f"Event streams: {CLIENTS} SSE clients on one API process "
          f"(API CPU {cpu:.1f} s, peak RSS {rss:.0f} MB)")  # fmt: skip
    print(f"{'throughput, ' + str(BURST) + ' events per client':<44}{'events/s':>10}{'ratio':>8}")
    print(f"{'  trivial sse-starlette app (ceiling)':<44}{ceiling_rate:>10.0f}{1:>8.2f}")
    print(f"{'  the tracker':<44}{tracker_rate:>10.0f}{tracker_rate / ceiling_rate:>8.2f}")
    print(f"latency at {PACED_RATE} events/s{'':<20}{'p50 ms':>10}{'p99 ms':>8}{'ratio':>8}")
    rows = {"polled": polled, "stream": paced.latencies_ms}
    for name, values in ((f"  GET /v1/events every {POLL_EVERY:g} s (baseline)", polled),
                         ("  the stream", paced.latencies_ms)):  # fmt: skip
        p50 = percentile(values, 0.5)
        print(f"{name:<44}{p50:>10.1f}{percentile(values, 0.99):>8.1f}"
              f"{p50 / percentile(polled, 0.5):>8.3f}")  # fmt: skip
    return {
        "tracker_rate": tracker_rate,
        "ceiling_rate": ceiling_rate,
        **{f"{k}_p50": percentile(v, 0.5) for k, v in rows.items()},
        **{f"{k}_p99": percentile(v, 0.99) for k, v in rows.items()},
    }
