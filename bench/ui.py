"""The dashboard with 10,000 tasks in one client's account: how long each page takes, against
the trivial route (`/healthz`) on the same server in the same run.

One `qrtracker api` process (no worker: the tasks are ended through the store, each with a
delivered attempt recorded as a worker records it). Each page is fetched 50 times in a row
by a signed-in session, as a browser would.
Target (issue 15): every page under 200 ms; (issue 25) p95 <= 50 ms with every task ended
and its webhook's attempt recorded with its request and answer.
"""

from __future__ import annotations

import asyncio
import re
import time

import httpx

from bench.capacity import register_all
from bench.harness import percentile, rig
from bench.memory import ATTEMPTS
from tracker.core.records import DeliveryState, Result, TaskState
from tracker.devtools.scenarios import doc_example
from tracker.store import Store, connection

TASKS = 10_000
ANSWERED = ATTEMPTS["detailed, a short answer"]
TIMES = 50
ADMIN = "bench-operator-token"


def session(url: str, secret: str) -> httpx.Client:
    browser = httpx.Client(base_url=url, timeout=30)
    form = browser.get("/ui/login").text
    token = re.search(r'name="csrf" value="([^"]+)"', form)
    assert token is not None
    answer = browser.post("/ui/login", data={"csrf": token.group(1), "secret": secret})
    if answer.status_code != 303:
        raise RuntimeError(f"sign-in answered {answer.status_code}")
    return browser


def timed(browser: httpx.Client, path: str) -> list[float]:
    times = []
    for _ in range(TIMES):
        started = time.perf_counter()
        answer = browser.get(path)
        if answer.status_code != 200:
            raise RuntimeError(f"{path}: {answer.status_code}")
        times.append((time.perf_counter() - started) * 1000)
    return times


async def end_all(redis_url: str, ids: list[str]) -> None:
    """End every task as completed, its delivery delivered at a first attempt that kept its
    request and answer, through the store (no worker: the same records a worker writes)."""
    pool = connection.connect(redis_url)
    store = Store(pool)
    final = doc_example()
    result = Result(TaskState.COMPLETED, "completed", video_url=final["video_url"])
    now = time.time()
    for task_id in ids:
        for delivery in await store.shards[0].polls.finish(
            task_id, result=result, upstream=final, polls=9, now=now
        ):
            await store.shards[0].deliveries.record_attempt(
                delivery, ANSWERED, state=DeliveryState.DELIVERED, next_attempt_at=None
            )
    await pool.aclose()


def run(count: int = TASKS) -> dict[str, float]:
    with rig(admin_token=ADMIN) as r:
        _, url = r.api()
        client = r.client()
        started = time.monotonic()
        ids = [f"veo3.1-fast:1770350082-ui{n}" for n in range(count)]
        # Metadata on every task; the search below looks for a value none has, so it reads
        # all the tasks it may (the worst case). Each task then ends, its webhook's attempt
        # recorded with its request and answer (issue 25: pages with attempts recorded).
        hooks = "https://hooks.example.com/qr"
        asyncio.run(register_all(url, client["api_key"], ids, hooks, metadata={"order": "o-1"}))
        asyncio.run(end_all(r.redis.url, ids))
        registered = time.monotonic() - started
        mine, operator = session(url, client["api_key"]), session(url, ADMIN)
        first = mine.get("/ui/tasks").text
        older = re.search(r'href="(/ui/tasks\?state=&amp;cursor=[^"]+)"', first)
        assert older is not None
        pages = {
            "GET /healthz (trivial route)": (mine, "/healthz"),
            "tasks, first page": (mine, "/ui/tasks"),
            "tasks, next page": (mine, older.group(1).replace("&amp;", "&")),
            "tasks, state filter": (mine, "/ui/tasks?state=completed"),
            "search a metadata value": (mine, "/ui/tasks?q=no-such-value"),
            "search, every task matching": (mine, "/ui/tasks?q=o-1"),
            "a task's page": (mine, "/ui/tasks/veo3.1-fast:1770350082-ui7"),
            "the operator's page": (operator, "/ui/operator"),
            "destinations": (mine, "/ui/destinations"),
        }
        rows = {name: timed(browser, path) for name, (browser, path) in pages.items()}
        mine.close()
        operator.close()
    base = percentile(rows["GET /healthz (trivial route)"], 0.5)
    print(f"Dashboard with {count:,} tasks in one account (registered in {registered:.0f} s); "
          f"{TIMES} fetches each")  # fmt: skip
    print(f"{'page':<30}{'p50 ms':>8}{'p95 ms':>8}{'x trivial':>11}")
    for name, values in rows.items():
        p50 = percentile(values, 0.5)
        print(f"{name:<30}{p50:>8.1f}{percentile(values, 0.95):>8.1f}{p50 / base:>11.1f}")
    return {name: percentile(values, 0.95) for name, values in rows.items()}
