"""The worker's parts in one process: `poll_task`, the delivery stages and the poller, on the
embedded Redis, with upstream and receivers played by an httpx `MockTransport`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from tracker.core.records import Client, DeliveryState, EventType, SubscriptionState, TaskState
from tracker.settings import Settings
from tracker.store import keys
from tracker.store.connection import connect
from workers.context import WorkerContext, build_context
from workers.deliver import attempt_delivery, conclude, prepare, send
from workers.poll import poll_task
from workers.poller import Poller

TASK = "veo3.1-fast:1770350082-inproc"
HOOK = "http://hooks.test/in"


class Peers:
    """Upstream answers by task id, and the receiver's answer; records every request."""

    def __init__(self) -> None:
        self.upstream: dict[str, dict[str, Any]] = {}
        self.receiver_status = 204
        self.posts: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/video/query":
            body = self.upstream.get(request.url.params["id"], {"status": "error"})
            return httpx.Response(200, json=body)
        self.posts.append(request)
        return httpx.Response(self.receiver_status)


@dataclass
class Parts:
    ctx: WorkerContext
    peers: Peers
    client: Client


@asynccontextmanager
async def worker_parts(settings: Settings) -> AsyncIterator[Parts]:
    """A worker context on the test's Redis and a mock network, and a client of the test's."""
    peers = Peers()
    redis = connect(str(settings.redis_url))
    http = httpx.AsyncClient(transport=httpx.MockTransport(peers.handle))
    ctx = build_context(settings, redis, http)
    client, _ = await ctx["store"].clients.create("inproc", time.time())
    try:
        yield Parts(ctx, peers, client)
    finally:
        await http.aclose()
        await redis.aclose()


async def register(parts: Parts, *events: EventType) -> None:
    now = time.time()
    await parts.ctx["store"].tasks.register(
        client_id=parts.client.id,
        task_id=TASK,
        callback_url=HOOK,
        metadata={"order": 7},
        events=events or (EventType.COMPLETED, EventType.FAILED, EventType.TIMED_OUT),
        now=now,
        deadline_at=now + 60,
        first_poll_at=now,
    )


def run(settings: Settings, body: Callable[[WorkerContext, Peers, Parts], Awaitable[None]]) -> None:
    async def main() -> None:
        async with worker_parts(settings) as parts:
            await body(parts.ctx, parts.peers, parts)

    asyncio.run(main())


def test_a_poll_that_sees_the_end_finishes_the_task_and_makes_the_first_attempt(
    settings: Settings,
) -> None:
    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        await register(parts)
        peers.upstream[TASK] = {"status": "completed", "video_url": "https://cdn.test/v.mp4"}
        await poll_task(ctx, TASK, await ctx["store"].tasks.get(TASK))
        task = await ctx["store"].tasks.get(TASK)
        assert task is not None and task.state is TaskState.COMPLETED
        (post,) = peers.posts
        event = Webhook(parts.client.secret).verify(post.content, dict(post.headers))
        assert event["data"]["video_url"] == "https://cdn.test/v.mp4"
        assert event["data"]["metadata"] == {"order": 7}
        delivery = await ctx["store"].deliveries.get(post.headers["webhook-id"])
        assert delivery is not None and delivery.state is DeliveryState.DELIVERED
        assert await ctx["redis"].zscore(keys.DUE_TASKS, TASK) is None

    run(settings, body)


def test_a_running_poll_records_the_status_and_queues_a_status_change(
    settings: Settings,
) -> None:
    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        await register(parts, EventType.STATUS_CHANGED, EventType.COMPLETED)
        peers.upstream[TASK] = {"status": "video_generating"}
        await poll_task(ctx, TASK, await ctx["store"].tasks.get(TASK))
        task = await ctx["store"].tasks.get(TASK)
        assert task is not None and task.state is TaskState.TRACKING
        assert (task.polls, task.upstream_status) == (1, "video_generating")
        assert await ctx["redis"].zscore(keys.DUE_TASKS, TASK) > time.time()
        queued = [j.decode() for j in await ctx["redis"].zrange("arq:queue", 0, -1)]
        assert len(queued) == 1 and queued[0].startswith("deliver:msg_")
        assert peers.posts == []  # a status change goes through the queue, not inline

    run(settings, body)


def test_the_delivery_stages_retry_on_a_500_then_end_dead(settings: Settings) -> None:
    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        await register(parts)
        peers.upstream[TASK] = {"status": "failed", "error": "no"}
        peers.receiver_status = 500
        await poll_task(ctx, TASK, await ctx["store"].tasks.get(TASK))  # attempt 1, inline
        delivery_id = peers.posts[0].headers["webhook-id"]
        for attempt in range(2, len(settings.delivery_schedule) + 2):
            prepared = await prepare(ctx["store"], delivery_id)
            assert prepared is not None and prepared.delivery.attempts == attempt - 1
            sent = await send(ctx["http"], prepared, settings.delivery_timeout)
            assert sent.status_code == 500
            decision = await conclude(ctx["store"], settings, prepared, sent, 0.5)
            last = attempt == len(settings.delivery_schedule) + 1
            assert (decision.delay is None) == last
        found = await ctx["store"].deliveries.get(delivery_id)
        assert found is not None and found.state is DeliveryState.DEAD
        assert len(await ctx["store"].deliveries.attempts(delivery_id)) == found.attempts
        assert await prepare(ctx["store"], delivery_id) is None  # ended: nothing more to send

    run(settings, body)


def test_a_delivery_whose_subscription_is_cancelled_is_skipped_unsent(settings: Settings) -> None:
    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        await register(parts, EventType.STATUS_CHANGED)
        peers.upstream[TASK] = {"status": "video_generating"}
        (delivery,) = await ctx["store"].polls.record_poll(
            TASK, polls=1, rejections=0, status="video_generating", previous_status=None,
            upstream=peers.upstream[TASK], next_poll_at=time.time() + 5, now=time.time(),
        )  # fmt: skip
        assert await ctx["store"].tasks.cancel(parts.client.id, TASK, time.time())
        assert await attempt_delivery(ctx, delivery.id) is None
        found = await ctx["store"].deliveries.get(delivery.id)
        assert found is not None and found.state is DeliveryState.SKIPPED
        sub = await ctx["store"].tasks.subscription(delivery.subscription_id)
        assert sub is not None and sub.state is SubscriptionState.CANCELLED
        assert peers.posts == []

    run(settings, body)


def test_the_poller_polls_due_tasks_until_they_end(settings: Settings) -> None:
    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        await register(parts)
        peers.upstream[TASK] = {"status": "video_generating"}
        poller = Poller(ctx)
        poller.start()
        try:
            deadline = time.monotonic() + 10
            while (task := await ctx["store"].tasks.get(TASK)) and task.polls < 2:
                assert time.monotonic() < deadline, "the poller never polled twice"
                await asyncio.sleep(0.02)
            peers.upstream[TASK] = {"status": "completed", "video_url": "https://cdn.test/v"}
            while not peers.posts:
                assert time.monotonic() < deadline, "the poller never ended the task"
                await asyncio.sleep(0.02)
        finally:
            await poller.stop(1.0)
        assert json.loads(peers.posts[0].content)["type"] == "video.completed"
        assert poller.inflight == {}

    run(settings, body)
