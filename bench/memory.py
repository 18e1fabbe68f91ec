"""Redis memory per tracked task: live (being polled) and ended (delivered, attempt logged).

Registers N tasks through the real store and queue into an empty embedded Redis and reads
`used_memory` before and after each stage. No HTTP: this measures what Redis holds.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

import redis

from tracker.core.records import FINAL_EVENTS, Attempt, DeliveryState, Result, TaskState
from tracker.core.vault import Vault, new_key
from tracker.devtools.scenarios import Scenario, doc_example
from tracker.devtools.simulator import Simulator
from tracker.embedded_redis import EmbeddedRedis
from tracker.settings import Settings
from tracker.store import Store, connection


def used_memory(url: str) -> int:
    with redis.Redis.from_url(url) as conn:
        return int(conn.info("memory")["used_memory"])


async def stages(url: str, n: int) -> dict[str, int]:
    settings = Settings(redis_url=url)
    pool = connection.connect(url)
    store = Store(
        pool,
        retention=settings.retention,
        delivery_window=settings.delivery_window,
        vault=Vault(new_key()),
    )
    client, _ = await store.clients.create("bench", time.time())
    sim = Simulator()
    running = sim.body(sim.script(scenario=Scenario.SUCCESS, duration=1e9))
    sizes = {"empty": used_memory(url)}
    now = time.time()
    ids = [f"veo3.1-fast:{int(now)}-bench{i:07d}" for i in range(n)]
    for task_id in ids:
        await store.tasks.register(
            client_id=client.id, task_id=task_id, callback_url="https://hooks.example.com/qr",
            metadata={"order": 12345, "user": "u_0001"}, events=list(FINAL_EVENTS), now=now,
            deadline_at=now + 1800, first_poll_at=now + 10,
        )  # fmt: skip
        await store.polls.record_poll(
            task_id, polls=3, rejections=0, status="video_generating", previous_status=None,
            upstream=running, next_poll_at=now + 20, now=now, origin=now - 30,
            history=[("pending", now - 30), ("video_generating", now - 5)],
        )  # fmt: skip
    sizes["live"] = used_memory(url)
    final = doc_example()
    result = Result(TaskState.COMPLETED, "completed", video_url=final["video_url"],
                    model="veo3.1-fast")  # fmt: skip
    for task_id in ids:
        for delivery in await store.polls.finish(task_id, result=result, upstream=final, polls=9,
                                           now=now):  # fmt: skip
            await store.deliveries.record_attempt(
                delivery, Attempt(now, 204, None, 12.5),
                state=DeliveryState.DELIVERED, next_attempt_at=None,
            )  # fmt: skip
    sizes["ended"] = used_memory(url)
    await pool.aclose()
    return sizes


def run(n: int = 10_000) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as data, EmbeddedRedis(Path(data)) as server:
        sizes = asyncio.run(stages(server.url, n))
    per_live = (sizes["live"] - sizes["empty"]) / n
    per_ended = (sizes["ended"] - sizes["empty"]) / n
    print(f"Redis memory per task, {n} tasks (used_memory deltas)")
    print(f"{'stage':<40} {'bytes/task':>10}")
    print(f"{'live: task, subscription, due entry':<40} {per_live:>10.0f}")
    print(f"{'ended: + final answer, delivery, feed':<40} {per_ended:>10.0f}")
    print(json.dumps({"live_bytes_per_task": round(per_live), "ended_bytes_per_task":
                      round(per_ended)}))  # fmt: skip
    return {"live": per_live, "ended": per_ended}
