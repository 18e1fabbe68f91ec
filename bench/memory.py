"""Redis memory per tracked task: live (being polled) and ended (delivered, attempt logged).

Registers N tasks through the real store and queue into an empty embedded Redis and reads
`used_memory` before and after each stage. No HTTP: this measures what Redis holds.
"""

from __future__ import annotations

import asyncio
import dataclasses
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
from tracker.store import Store, codec, connection, keys


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
        await store.shards[0].registrations.register(
            client_id=client.id, task_id=task_id, callback_url="https://hooks.example.com/qr",
            metadata={"order": 12345, "user": "u_0001"}, events=list(FINAL_EVENTS), now=now,
            deadline_at=now + 1800, first_poll_at=now + 10,
        )  # fmt: skip
        await store.shards[0].polls.record_poll(
            task_id, polls=3, rejections=0, status="video_generating", previous_status=None,
            upstream=running, next_poll_at=now + 20, now=now, origin=now - 30,
            history=[("pending", now - 30), ("video_generating", now - 5)],
        )  # fmt: skip
    sizes["live"] = used_memory(url)
    final = doc_example()
    result = Result(TaskState.COMPLETED, "completed", video_url=final["video_url"],
                    model="veo3.1-fast")  # fmt: skip
    delivered = []
    for task_id in ids:
        ended = await store.shards[0].polls.finish(
            task_id, result=result, upstream=final, polls=9, now=now
        )
        for delivery in ended:
            await store.shards[0].deliveries.record_attempt(
                delivery, Attempt(now, 204, None, 12.5),
                state=DeliveryState.DELIVERED, next_attempt_at=None,
            )  # fmt: skip
            delivered.append(delivery.id)
    sizes["ended"] = used_memory(url)
    # One more attempt in each log, of each kind an attempt record comes in (issue 25).
    for kind, attempt in ATTEMPTS.items():
        async with pool.pipeline(transaction=False) as pipe:
            for delivery_id in delivered:
                pipe.rpush(keys.HOME.delivery_attempts(delivery_id), codec.attempt_json(attempt))
            await pipe.execute()
        sizes[kind] = used_memory(url)
    await pool.aclose()
    return sizes


_SENT = {
    "content-type": "application/json", "webhook-id": "msg_" + "a" * 24,
    "webhook-timestamp": "1770350330", "webhook-signature": "v1," + "s" * 44,
}  # fmt: skip
_ANSWERED = [
    ["content-type", "application/json"], ["content-length", "38"],
    ["date", "Fri, 06 Feb 2026 03:58:50 GMT"], ["server", "nginx"],
    ["x-request-id", "5b0e1c9e-8a41-4f0e-9d6b-2f7a3c1d9e11"],
]  # fmt: skip
_DETAILED = Attempt(
    1770350330.5, 401, None, 84.2, url="https://hooks.example.com/qr", request_headers=_SENT,
    answer_headers=_ANSWERED, answer_body='{"error": "the signature did not verify"}',
    resolve_ms=3.1, connect_ms=21.7, first_byte_ms=80.4,
)  # fmt: skip
ATTEMPTS = {
    "status only (TRACKER_RECORD_ANSWERS=false)": Attempt(1770350330.5, 204, None, 12.5),
    "detailed, a short answer": _DETAILED,
    "detailed, 32 headers and a 4 KiB body": dataclasses.replace(
        _DETAILED, answer_headers=[[f"x-h{n}", "v" * 60] for n in range(32)],
        answer_body="b" * 4096,
    ),
}  # fmt: skip


def run(n: int = 10_000) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as data, EmbeddedRedis(Path(data)) as server:
        sizes = asyncio.run(stages(server.url, n))
    per_live = (sizes["live"] - sizes["empty"]) / n
    per_ended = (sizes["ended"] - sizes["empty"]) / n
    print(f"Redis memory per task, {n} tasks (used_memory deltas)")
    print(f"{'stage':<40} {'bytes/task':>10}")
    print(f"{'live: task, subscription, due entry':<40} {per_live:>10.0f}")
    print(f"{'ended: + final answer, delivery, feed':<40} {per_ended:>10.0f}")
    print(f"{'one more attempt in the log, kept as':<40} {'bytes':>10}")
    before = sizes["ended"]
    for kind in ATTEMPTS:
        print(f"{'  ' + kind:<40} {(sizes[kind] - before) / n:>10.0f}")
        before = sizes[kind]
    print(json.dumps({"live_bytes_per_task": round(per_live), "ended_bytes_per_task":
                      round(per_ended)}))  # fmt: skip
    return {"live": per_live, "ended": per_ended}
