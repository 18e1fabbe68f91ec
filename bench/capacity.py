"""Capacity: N tasks tracked at once, with durations spread over minutes, all delivered.

Durations 90 to 250 s (Veo) on a clock twice real time (so the load per second is that of
the real durations, doubled); one API and one worker process.
Registrations go through the API over HTTP, as fast as 32 concurrent clients can; then every
task is polled and delivered. Figures: registrations/s, polls/s sustained, CPU seconds per
task, peak RSS of each process, peak Redis memory per tracked task, webhooks delivered; the
same load through one worker process and through two, side by side (on this machine's two
cores, shared with the API, Redis, the simulator and the receiver).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time

import aiohttp

from bench.harness import on_clock, percentile, rig

SPEED = 2.0
CONCURRENCY = 32


async def register_all(
    url: str,
    key: str | list[str],
    task_ids: list[str],
    callback: str | list[str] | None,
    **extra: object,
) -> float:
    """Register every task with `key` (or the client's key of the same place in a list of
    them), with `callback` (or the callback of the same place in a list of them, or for the
    feed only; `extra` in each body); returns the elapsed seconds."""
    callbacks = callback if isinstance(callback, list) else [callback] * len(task_ids)
    api_keys = key if isinstance(key, list) else [key] * len(task_ids)
    queue_ = list(reversed(list(zip(task_ids, callbacks, api_keys, strict=True))))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as http:

        async def loop() -> None:
            while queue_:
                task_id, target, api_key = queue_.pop()
                body: dict[str, object] = {"task_id": task_id, **extra}
                if target is not None:
                    body["callback_url"] = target
                headers = {"authorization": f"Bearer {api_key}"}
                async with http.post(url + "/v1/tasks", json=body, headers=headers) as r:
                    if r.status != 201:
                        raise RuntimeError(f"registration answered {r.status}")

        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(CONCURRENCY)))
        return time.monotonic() - started


def scenario(n: int, workers: int) -> dict[str, float]:
    """One run: `n` tasks through one API and `workers` worker processes."""
    with rig(
        speed=SPEED,
        **on_clock(SPEED),
        delivery_timeout=15.0,
        worker_concurrency=200,
    ) as r:
        api, url = r.api()
        started_workers = [r.start("worker", f"worker-{k}") for k in range(workers)]
        client = r.client()
        rng = random.Random(3)
        empty = r.redis_memory()
        peak = [empty]
        done = threading.Event()

        def watch_memory() -> None:
            while not done.wait(0.5):
                peak[0] = max(peak[0], r.redis_memory())

        threading.Thread(target=watch_memory, daemon=True).start()
        started = time.monotonic()
        registering = 0.0
        # Script each batch just before registering it: a task's clock starts when scripted.
        for first in range(0, n, 500):
            batch = [{"duration": rng.uniform(90, 250)} for _ in range(min(500, n - first))]
            ids = [str(t["task_id"]) for t in r.simulator.script(batch)]  # type: ignore[arg-type]
            registering += asyncio.run(
                register_all(url, client["api_key"], ids, r.receiver.url + "/c")
            )
        deadline = time.monotonic() + 600
        while len(r.receiver.accepted("/c")) < n and time.monotonic() < deadline:
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        done.set()
        arrived = {h.json()["data"]["task_id"]: h.at for h in r.receiver.accepted("/c")}
        final = r.simulator.tasks()
        polls = sum(int(t["requests"]) for t in final.values())  # type: ignore[call-overload]
        lags = [(at - float(final[t]["final_at"])) * SPEED for t, at in arrived.items()]  # type: ignore[arg-type]
        figures = {
            "tasks": n,
            "registrations/s": n / registering,
            "polls/s sustained": polls / elapsed,
            "polls per task": polls / n,
            "worker CPU s per task": sum(w.cpu_seconds() for w in started_workers) / n,
            "API CPU s per task": api.cpu_seconds() / n,
            "worker peak RSS MB": max(w.peak_rss_mb() for w in started_workers),
            "API peak RSS MB": api.peak_rss_mb(),
            "Redis bytes per tracked task (peak)": (peak[0] - empty) / n,
            "webhooks delivered": len(arrived),
            "lag p50 (upstream s)": percentile(lags, 0.5),
            "lag p95 (upstream s)": percentile(lags, 0.95),
            "run seconds": elapsed,
        }
    return figures


def run(n: int = 10_000) -> dict[int, dict[str, float]]:
    """The same load through one worker process, then through two, side by side."""
    runs = {workers: scenario(n, workers) for workers in (1, 2)}
    print(f"Capacity: {n} tasks, durations 90-250 s on a x{SPEED:g} clock, 1 API process")
    print(f"{'figure':<40}{'1 worker':>12}{'2 workers':>12}{'2 / 1':>8}")
    for name in runs[1]:
        one, two = runs[1][name], runs[2][name]
        print(f"{name:<40}{one:>12.4g}{two:>12.4g}{two / one if one else float('nan'):>8.2f}")
    return runs
