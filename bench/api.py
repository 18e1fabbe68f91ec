"""The API on one process: registrations/s and status reads/s against a trivial route.

The trivial route is `/healthz` (a constant JSON answer, no Redis) on the same server, run
first and last in the same run; the ceiling is the mean of the two. Load comes from this
process over aiohttp, 32 requests at once.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

import aiohttp

from bench.harness import percentile, rig

SECONDS = 5.0
CONCURRENCY = 32


async def load(
    url: str, make: Callable[[int], tuple[str, str, dict[str, object] | None]], key: str
) -> tuple[float, float, float]:
    """Requests/s, p50 and p99 latency (ms) of CONCURRENCY loops for SECONDS."""
    latencies: list[float] = []
    counter = itertools.count()
    stop = time.monotonic() + SECONDS
    headers = {"authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as http:

        async def loop() -> None:
            while time.monotonic() < stop:
                method, path, body = make(next(counter))
                started = time.perf_counter()
                async with http.request(method, url + path, json=body, headers=headers) as r:
                    await r.read()
                    if r.status >= 300:
                        raise RuntimeError(f"{method} {path}: {r.status}")
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(CONCURRENCY)))
        elapsed = time.monotonic() - started
    return len(latencies) / elapsed, percentile(latencies, 0.5), percentile(latencies, 0.99)


def run() -> dict[str, tuple[float, float, float]]:
    with rig() as r:
        api, url = r.api()
        client = r.client()
        key = client["api_key"]
        rows: dict[str, tuple[float, float, float]] = {}
        trivial = asyncio.run(load(url, lambda i: ("GET", "/healthz", None), key))
        rows["POST /v1/tasks (register)"] = asyncio.run(
            load(
                url,
                lambda i: (
                    "POST",
                    "/v1/tasks",
                    {
                        "task_id": f"veo3.1-fast:1770350082-b{i}",
                        "callback_url": "http://127.0.0.1:9/hook",
                    },
                ),
                key,
            )
        )
        rows["GET /v1/tasks/{id} (status read)"] = asyncio.run(
            load(url, lambda i: ("GET", f"/v1/tasks/veo3.1-fast:1770350082-b{i % 1000}", None), key)
        )
        # The trivial route again, after: the ratios are against the mean of both runs, since
        # this machine's speed drifts within a run.
        again = asyncio.run(load(url, lambda i: ("GET", "/healthz", None), key))
        cpu, rss = api.cpu_seconds(), api.peak_rss_mb()
    print(f"  (trivial route: {trivial[0]:.0f}/s first, {again[0]:.0f}/s last)")
    mean = ((trivial[0] + again[0]) / 2, (trivial[1] + again[1]) / 2, (trivial[2] + again[2]) / 2)
    rows = {"GET /healthz (trivial, mean)": mean, **rows}
    ceiling = rows["GET /healthz (trivial, mean)"][0]
    print(f"API on one process ({CONCURRENCY} concurrent, {SECONDS:g} s each); "
          f"API CPU {cpu:.1f} s, peak RSS {rss:.0f} MB")  # fmt: skip
    print(f"{'route':<34}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'vs trivial':>12}")
    for name, (rate, p50, p99) in rows.items():
        print(f"{name:<34}{rate:>8.0f}{p50:>8.1f}{p99:>8.1f}{rate / ceiling:>12.0%}")
    return rows
