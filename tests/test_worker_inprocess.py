"""The worker's parts in one process: `poll_task`, the delivery stages and the poller, on the
embedded Redis, with upstream and receivers played by an httpx `MockTransport`."""

from __future__ import annotations

import asyncio
import time

from standardwebhooks.webhooks import Webhook

from tests.support import TASK, Parts, Peers, queued, register, run
from tracker.core.feed import Filter
from tracker.core.records import DeliveryState, EventType, Result, SubscriptionState, TaskState
from tracker.settings import Settings
from tracker.store import keys
from workers.context import WorkerContext
from workers.deliver import attempt_delivery, conclude, prepare, send
from workers.poll import poll_task
from workers.poller import Poller

DONE = Result(TaskState.COMPLETED, "completed", video_url="https://cdn.test/v.mp4")


def test_a_poll_that_sees_the_end_hands_the_first_attempt_to_the_delivery_side(
    settings: Settings,
) -> None:
    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        await register(parts)
        peers.upstream[TASK] = {"status": "completed", "video_url": "https://cdn.test/v.mp4"}
        await poll_task(
            ctx, ctx["store"].shards[0], TASK, await ctx["store"].shards[0].tasks.get(TASK)
        )
        task = await ctx["store"].shards[0].tasks.get(TASK)
        assert task is not None and task.state is TaskState.COMPLETED
        assert peers.posts == []  # the poll never waits for a receiver
        (delivery_id,) = await queued(ctx)
        assert await attempt_delivery(ctx, ctx["store"].shards[0], delivery_id) is None
        (post,) = peers.posts
        event = Webhook(parts.client.secret).verify(post.content, dict(post.headers))
        assert event["data"]["video_url"] == "https://cdn.test/v.mp4"
        assert event["data"]["metadata"] == {"order": 7}
        delivery = await ctx["store"].shards[0].deliveries.get(post.headers["webhook-id"])
        assert delivery is not None and delivery.state is DeliveryState.DELIVERED
        assert await ctx["redis"].zscore(keys.HOME.DUE_TASKS, TASK) is None

    run(settings, body)


def test_a_running_poll_records_the_status_and_queues_a_status_change(
    settings: Settings,
) -> None:
    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        await register(parts, EventType.STATUS_CHANGED, EventType.COMPLETED)
        peers.upstream[TASK] = {"status": "video_generating"}
        await poll_task(
            ctx, ctx["store"].shards[0], TASK, await ctx["store"].shards[0].tasks.get(TASK)
        )
        task = await ctx["store"].shards[0].tasks.get(TASK)
        assert task is not None and task.state is TaskState.TRACKING
        assert (task.polls, task.upstream_status) == (1, "video_generating")
        assert await ctx["redis"].zscore(keys.HOME.DUE_TASKS, TASK) > time.time()
        assert len(await queued(ctx)) == 1
        assert peers.posts == []

    run(settings, body)


def test_the_delivery_stages_retry_on_a_500_then_end_dead(settings: Settings) -> None:
    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        await register(parts)
        peers.upstream[TASK] = {"status": "failed", "error": "no"}
        peers.receiver_status = 500
        await poll_task(
            ctx, ctx["store"].shards[0], TASK, await ctx["store"].shards[0].tasks.get(TASK)
        )
        (delivery_id,) = await queued(ctx)
        for attempt in range(1, len(settings.delivery_schedule) + 2):
            prepared = await prepare(ctx["store"].shards[0], delivery_id)
            assert prepared is not None and prepared.delivery.attempts == attempt - 1
            sent = await send(ctx["callbacks"], prepared, settings.delivery_timeout, time.time)
            assert sent.status_code == 500
            decision = await conclude(ctx["store"].shards[0], settings, prepared, sent, 0.5)
            last = attempt == len(settings.delivery_schedule) + 1
            assert (decision.delay is None) == last
        found = await ctx["store"].shards[0].deliveries.get(delivery_id)
        assert found is not None and found.state is DeliveryState.DEAD
        assert len(await ctx["store"].shards[0].deliveries.attempts(delivery_id)) == found.attempts
        assert (
            await prepare(ctx["store"].shards[0], delivery_id) is None
        )  # ended: nothing more to send

    run(settings, body)


def test_a_delivery_whose_subscription_is_cancelled_is_skipped_unsent(settings: Settings) -> None:
    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        await register(parts, EventType.STATUS_CHANGED)
        peers.upstream[TASK] = {"status": "video_generating"}
        (delivery,) = await ctx["store"].shards[0].polls.record_poll(
            TASK, polls=1, rejections=0, status="video_generating", previous_status=None,
            upstream=peers.upstream[TASK], next_poll_at=time.time() + 5, now=time.time(),
        )  # fmt: skip
        assert await ctx["store"].shards[0].tasks.cancel(parts.client.id, TASK, time.time())
        assert await attempt_delivery(ctx, ctx["store"].shards[0], delivery.id) is None
        found = await ctx["store"].shards[0].deliveries.get(delivery.id)
        assert found is not None and found.state is DeliveryState.SKIPPED
        sub = await ctx["store"].shards[0].tasks.subscription(delivery.subscription_id)
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
            while (task := await ctx["store"].shards[0].tasks.get(TASK)) and task.polls < 2:
                assert time.monotonic() < deadline, "the poller never polled twice"
                await asyncio.sleep(0.02)
            peers.upstream[TASK] = {"status": "completed", "video_url": "https://cdn.test/v"}
            while not await queued(ctx):
                assert time.monotonic() < deadline, "the poller never ended the task"
                await asyncio.sleep(0.02)
        finally:
            await poller.stop(1.0)
        task = await ctx["store"].shards[0].tasks.get(TASK)
        assert task is not None and task.state is TaskState.COMPLETED
        assert poller.inflight == {}

    run(settings, body)


def test_a_final_event_is_stored_once_and_sent_as_it_was_made(settings: Settings) -> None:
    """The final answer is kept by its task: the delivery holds its body only while pending
    (for its attempts), the feed entry never; once the delivery ends, the body is built
    again, byte for byte, at every read and every redelivered attempt."""

    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        store, redis = ctx["store"], ctx["redis"]
        await register(parts)
        final = {"status": "completed", "video_url": "https://cdn.test/v.mp4", "n": 1.5,
                 "detail": {"prompt": "a long prompt " * 60}}  # fmt: skip
        (made,) = await store.shards[0].polls.finish(
            TASK, result=DONE, upstream=final, polls=2, now=time.time()
        )
        assert made.body and made.source == TASK
        assert await redis.hget(keys.HOME.delivery(made.id), "body") is None  # never in its hash
        assert await redis.get(keys.HOME.delivery_body(made.id)) == made.body  # while pending
        # The task keeps it in a key of its own; its hash stays in the compact encoding.
        assert await redis.exists(keys.HOME.task_answer(TASK))
        assert await redis.object("encoding", keys.HOME.task(TASK)) in {b"ziplist", b"listpack"}
        ended = await store.shards[0].tasks.get(TASK)
        assert ended is not None and ended.upstream == final  # the whole answer, as it came
        (entry,) = await redis.xrange(keys.HOME.client_events(parts.client.id))
        assert b"body" not in entry[1]
        peers.receiver_status = 500
        assert (
            await attempt_delivery(ctx, ctx["store"].shards[0], made.id) is not None
        )  # a retry is due
        peers.receiver_status = 204
        assert await attempt_delivery(ctx, ctx["store"].shards[0], made.id) is None
        assert not await redis.exists(keys.HOME.delivery_body(made.id))  # ended: dropped
        # The hash stays in the compact encoding (a long body would have ended that for good).
        assert await redis.object("encoding", keys.HOME.delivery(made.id)) in {
            b"ziplist",
            b"listpack",
        }
        page, _, _ = await store.shards[0].feed.page(parts.client.id, "0-0", 10, Filter(), 100)
        assert [e.body for e in page] == [made.body]
        assert ended is not None
        subs = await store.shards[0].tasks.subscriptions_of(ended)
        await store.shards[0].deliveries.redeliver(ended, subs, time.time())
        assert (
            await attempt_delivery(ctx, ctx["store"].shards[0], made.id) is None
        )  # built again from the task
        assert [p.content for p in peers.posts] == [made.body, made.body, made.body]

    run(settings, body)


def test_a_pending_final_event_goes_out_though_its_task_record_is_lost(
    settings: Settings,
) -> None:
    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        store, redis = ctx["store"], ctx["redis"]
        await register(parts)
        (made,) = await store.shards[0].polls.finish(
            TASK, result=DONE, upstream=None, polls=1, now=time.time()
        )
        await redis.delete(
            keys.HOME.task(TASK), keys.HOME.task_answer(TASK)
        )  # as a lost record leaves it
        assert (
            await attempt_delivery(ctx, ctx["store"].shards[0], made.id) is None
        )  # its kept body needs no task
        assert [p.content for p in peers.posts] == [made.body]
        found = await store.shards[0].deliveries.get(made.id)
        assert found is not None and found.state is DeliveryState.DELIVERED

    run(settings, body)


def test_a_final_event_whose_task_record_is_gone_is_skipped_with_a_record(
    settings: Settings,
) -> None:
    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        store, redis = ctx["store"], ctx["redis"]
        await register(parts)
        (made,) = await store.shards[0].polls.finish(
            TASK, result=DONE, upstream=None, polls=1, now=0.0
        )
        await redis.delete(keys.HOME.task(TASK))  # as a lost record leaves it
        # Without the body a pending delivery keeps (as a redelivered one is), nothing to send.
        await redis.delete(keys.HOME.delivery_body(made.id))
        assert await attempt_delivery(ctx, ctx["store"].shards[0], made.id) is None
        found = await store.shards[0].deliveries.get(made.id)
        assert found is not None and found.state is DeliveryState.SKIPPED
        assert peers.posts == []
        page, _, _ = await store.shards[0].feed.page(parts.client.id, "0-0", 10, Filter(), 100)
        assert page == []  # the feed leaves out what it cannot build, and goes on

    run(settings, body)


def test_a_claimed_batch_reads_each_kind_of_record_in_one_call(settings: Settings) -> None:
    """`Store.outgoing` (one READ_OUTGOING call for a dispatcher's batch): a final event built
    from its task, a status change with its own body, a delivery whose subscription is gone,
    a partial record (an orphan) and an id with no record, each read as it is."""

    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        store, redis = ctx["store"], ctx["redis"]
        await register(parts, EventType.COMPLETED, EventType.STATUS_CHANGED)
        peers.upstream[TASK] = {"status": "video_generating"}
        await poll_task(ctx, ctx["store"].shards[0], TASK, await store.shards[0].tasks.get(TASK))
        (changed_id,) = await queued(ctx)
        changed = await store.shards[0].deliveries.get(changed_id)
        assert changed is not None and changed.body and not changed.source  # its own body
        (final,) = await store.shards[0].polls.finish(
            TASK, result=DONE, upstream=None, polls=2, now=1.0
        )
        await redis.hset(
            keys.HOME.delivery("msg_orphan"), "state", "pending"
        )  # a lost record's rest
        await redis.hset(keys.HOME.delivery("msg_subgone"), mapping={
            **{
                k.decode(): v
                for k, v in (await redis.hgetall(keys.HOME.delivery(final.id))).items()
            },
            "subscription_id": "sub_gone",
        })  # fmt: skip
        ids = [final.id, changed.id, "msg_subgone", "msg_orphan", "msg_none"]
        found = await store.shards[0].outgoing(ids, time.time())
        assert list(found) == ids
        delivery, sub, client = found[final.id]
        assert delivery is not None and delivery.body == final.body  # kept while pending
        await redis.delete(keys.HOME.delivery_body(final.id))  # as an ended, redelivered one is
        delivery, _, _ = (await store.shards[0].outgoing([final.id], time.time()))[final.id]
        assert delivery is not None and delivery.body == final.body  # built again, the same
        assert sub is not None and client is not None and client.id == parts.client.id
        delivery, sub, _ = found[changed.id]
        assert delivery is not None and delivery.body == changed.body and sub is not None
        delivery, sub, client = found["msg_subgone"]
        assert delivery is not None and (sub, client) == (None, None)
        assert found["msg_orphan"] == (None, None, None)
        assert found["msg_none"] == (None, None, None)

    run(settings, body)
