"""The store's guards, one test each: what a stale worker or a late write must never do.
`python -m tests.mutants` removes each guard in turn and checks that its test fails."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

from tests.support import HOOK, TASK, Parts, Peers, queued, register, run
from tracker.core.estimates import CONFIDENT_SAMPLES, TOTAL
from tracker.core.limits import Limits
from tracker.core.records import Delivery, DeliveryState, EventType, Result, TaskState
from tracker.errors import LimitReached
from tracker.settings import Settings
from tracker.store import keys, scripts
from tracker.store.learning import CACHED_MODELS
from tracker.store.registration import DEFAULT_LIMITS, Registration
from workers.context import WorkerContext
from workers.deliver import attempt_delivery
from workers.poll import poll_task

DONE = Result(TaskState.COMPLETED, "completed", video_url="https://cdn.test/v.mp4")


def test_a_task_ends_once_so_its_outcome_makes_its_events_once(settings: Settings) -> None:
    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        await register(parts)
        polls = ctx["store"].shards[0].polls
        first = await polls.finish(TASK, result=DONE, upstream=None, polls=1, now=time.time())
        again = await polls.finish(TASK, result=DONE, upstream=None, polls=2, now=time.time())
        assert len(first) == 1 and again == ()
        task = await ctx["store"].shards[0].tasks.get(TASK)
        assert task is not None and task.polls == 1  # the second end wrote nothing

    run(settings, body)


def test_a_stale_poll_never_brings_a_cancelled_task_back(settings: Settings) -> None:
    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        await register(parts)
        peers.upstream[TASK] = {"status": "pending"}
        await poll_task(
            ctx, ctx["store"].shards[0], TASK, await ctx["store"].shards[0].tasks.get(TASK)
        )  # status: pending
        stale = await ctx["store"].shards[0].tasks.get(TASK)  # a poller holds this record...
        assert await ctx["store"].shards[0].tasks.cancel(parts.client.id, TASK, time.time())
        await poll_task(
            ctx, ctx["store"].shards[0], TASK, stale
        )  # ...and polls with it: the same status, a quiet poll
        assert await ctx["redis"].zscore(keys.HOME.DUE_TASKS, TASK) is None
        task = await ctx["store"].shards[0].tasks.get(TASK)
        assert task is not None and (task.state, task.polls) == (TaskState.CANCELLED, 1)

    run(settings, body)


def test_a_pending_delivery_is_never_forgotten_or_skipped_once_ended(settings: Settings) -> None:
    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        await register(parts)
        store = ctx["store"]
        (delivery,) = await store.shards[0].polls.finish(
            TASK, result=DONE, upstream=None, polls=1, now=time.time()
        )
        await store.shards[0].deliveries.forget_due(delivery.id)  # pending: stays due
        assert delivery.id in await queued(ctx)
        assert await attempt_delivery(ctx, ctx["store"].shards[0], delivery.id) is None
        await store.shards[0].deliveries.skip(delivery.id)  # delivered: a late skip changes nothing
        found = await store.shards[0].deliveries.get(delivery.id)
        assert found is not None and found.state is DeliveryState.DELIVERED

    run(settings, body)


def test_registrations_made_at_once_each_keep_their_subscription(settings: Settings) -> None:
    """Read, decide, then compare-and-set: twenty registrations of one task read the same
    subscription list, and each that writes after another must read again, not overwrite."""

    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        roomy = Limits(per_task_per_client=20)
        made = await asyncio.gather(
            *(registering(parts, TASK, f"{HOOK}/{n}", roomy) for n in range(20))
        )
        task = await ctx["store"].shards[0].tasks.get(TASK)
        assert task is not None
        assert sorted(task.subscription_ids) == sorted(r.subscription.id for r in made)
        assert len(task.subscription_ids) == 20

    run(settings, body)


def test_registrations_made_at_once_never_pass_the_live_task_limit(settings: Settings) -> None:
    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        limit = Limits(live_tasks_per_client=5)
        answers = await asyncio.gather(
            *(registering(parts, f"veo3.1-fast:1-live{n}", HOOK, limit) for n in range(20)),
            return_exceptions=True,
        )
        refused = [a for a in answers if isinstance(a, LimitReached)]
        assert len(refused) == 15, answers
        assert "at most 5 tasks" in str(refused[0])
        assert await ctx["store"].shards[0].tasks.live_count(parts.client.id) == 5

    run(settings, body)


def registering(
    parts: Parts, task_id: str, callback_url: str, limits: Limits = DEFAULT_LIMITS
) -> Coroutine[Any, Any, Registration]:
    now = time.time()
    return parts.ctx["store"].shards[0].registrations.register(
        client_id=parts.client.id, task_id=task_id, callback_url=callback_url, metadata={},
        events=(), now=now, deadline_at=now + 60, first_poll_at=now, limits=limits,
    )  # fmt: skip


async def status_poll(parts: Parts, status: str) -> tuple[Delivery, ...]:
    """A poll of TASK that saw the upstream status turn `status`."""
    now = time.time()
    return await parts.ctx["store"].shards[0].polls.record_poll(
        TASK, polls=1, rejections=0, status=status, previous_status=None,
        upstream={"status": status}, next_poll_at=now + 5, now=now,
        history=[(status, now)],
    )  # fmt: skip


def test_a_status_change_nobody_asked_for_is_recorded_without_events(
    settings: Settings,
) -> None:
    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        await register(parts)  # final events only
        assert await status_poll(parts, "video_generating") == ()
        task = await ctx["store"].shards[0].tasks.get(TASK)
        assert task is not None and task.upstream_status == "video_generating"
        assert [s for s, _ in task.history] == ["video_generating"]
        assert await queued(ctx) == []

    run(settings, body)


def test_a_status_change_some_subscription_asked_for_makes_its_event(
    settings: Settings,
) -> None:
    """Asked for by a subscription added to a task whose first one did not, or on a record
    from before tasks said whether any did: never recorded quietly."""

    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        await register(parts)
        now = time.time()
        await ctx["store"].shards[0].registrations.register(
            client_id=parts.client.id, task_id=TASK, callback_url=f"{HOOK}/status",
            metadata={}, events=(EventType.STATUS_CHANGED,), now=now, deadline_at=now + 60,
            first_poll_at=now,
        )  # fmt: skip
        (made,) = await status_poll(parts, "video_generating")
        assert made.event_type is EventType.STATUS_CHANGED
        await ctx["redis"].hdel(keys.HOME.task(TASK), "status_events")  # an older record
        (again,) = await status_poll(parts, "video_upsampling")
        assert again.event_type is EventType.STATUS_CHANGED
        assert len(await queued(ctx)) == 2

    run(settings, body)


def test_one_clients_backlog_of_due_polls_never_holds_back_anothers(settings: Settings) -> None:
    """A claim takes due tasks in turn from each client that owns some, and puts off what it
    looked at and left, so the next claim looks behind it: a client with a backlog of due
    polls (its 3,000 tasks ending at once) shares every claim with the others."""

    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        redis, polls = ctx["redis"], ctx["store"].shards[0].polls
        now = time.time()

        async def due(task_ids: list[str], owner: str, at: float) -> None:
            for i, task_id in enumerate(task_ids):
                await redis.hset(keys.HOME.task(task_id), "owner", owner)
                await redis.zadd(keys.HOME.DUE_TASKS, {task_id: at + i * 0.001})

        noisy = [f"veo3:1-noisy{i:03d}" for i in range(60)]
        quiet = [f"veo3:1-quiet{i}" for i in range(3)]
        await due(noisy, "cli_noisy", now - 100)  # due first, all of them
        await due(quiet, "cli_quiet", now - 50)
        claimed, _ = await polls.claim_due(now, 4, now + 30, scan=20)
        assert claimed == noisy[:4]  # only the noisy client's in view: its first four
        assert (
            await redis.zscore(keys.HOME.DUE_TASKS, noisy[4]) == now + scripts.CLAIM_PASS_OVER
        )  # put off
        assert await redis.zscore(keys.HOME.DUE_TASKS, noisy[0]) == now + 30  # leased
        got = list(claimed)
        for _ in range(3):  # the claims look behind the backlog, not at its head again
            got += (await polls.claim_due(now, 4, now + 30, scan=20))[0]
        assert set(quiet) <= set(got) and len(set(got)) == len(got)

        # Both in view: one of each in turn, each client's in due order.
        await due(noisy[:5], "cli_noisy", now - 10)
        await due(quiet, "cli_quiet", now - 5)
        claimed, _ = await polls.claim_due(now, 4, now + 30, scan=20)
        assert claimed == [noisy[0], quiet[0], noisy[1], quiet[1]]

    run(settings, body)


def test_a_page_of_a_clients_tasks_looks_at_a_bounded_number_of_them(settings: Settings) -> None:
    """A state filter few tasks match never makes one request read the whole list (10,000
    tracked tasks and more ended ones): each page looks at `scan` tasks at most and gives a
    cursor to go on from, and following the cursors still finds every match once."""

    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        shard = ctx["store"].shards[0]
        tasks, index = shard.tasks, shard.task_index
        now = time.time()
        ids = [f"veo3:1-listed{i:02d}" for i in range(25)]
        for i, task_id in enumerate(ids):
            await shard.registrations.register(
                client_id=parts.client.id, task_id=task_id, callback_url=HOOK, metadata={},
                events=(EventType.COMPLETED,), now=now + i, deadline_at=now + 60,
                first_poll_at=now + 60,
            )  # fmt: skip
        for task_id in (ids[0], ids[1]):  # the two oldest: the only matches, at the far end
            assert await tasks.cancel(parts.client.id, task_id, now + 30)
        pages, found, cursor = 0, [], None
        while True:
            page, cursor = await index.list_for_client(
                parts.client.id, before=cursor, limit=5, state=TaskState.CANCELLED, scan=7
            )
            pages += 1
            found += [task.task_id for task, _ in page]
            if cursor is None:
                break
        assert found == [ids[1], ids[0]]  # newest first, each once
        assert pages == 4  # 7 + 7 + 7 looked at, then the last 4 and the end
        everything, _ = await index.list_for_client(
            parts.client.id, before=None, limit=100, state=None
        )
        assert len(everything) == 25  # the default scan still lists a whole page

    run(settings, body)


def test_a_process_keeps_what_a_bounded_number_of_models_taught(settings: Settings) -> None:
    """A model is a task id's prefix, which clients write: a process caches what models
    taught for a bounded number of them, however many prefixes it is asked about."""

    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        learning = ctx["store"].learning
        await learning.learn("veo3.1-fast", [(TOTAL, 60.0)])
        now = time.time()
        assert await learning.cached("veo3.1-fast", now) == {TOTAL: [60.0]}
        for i in range(CACHED_MODELS + 50):
            await learning.cached(f"made-up-{i}", now)
        assert len(learning._cache) == CACHED_MODELS
        assert await learning.cached("veo3.1-fast", now) == {TOTAL: [60.0]}  # read again

    run(settings, body)


def test_a_model_still_learning_is_read_again_soon(settings: Settings) -> None:
    """Under the confident count, a process re-reads a model's samples every fifteenth of a
    refresh (each finished task may be the one that lets its polls follow what it learned);
    from then on, once a refresh."""

    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        learning, now = ctx["store"].learning, time.time()
        soon = learning.refresh / 15 + 0.01
        await learning.learn("veo3-young", [(TOTAL, 60.0)] * 1)
        assert len((await learning.cached("veo3-young", now))[TOTAL]) == 1
        for _ in range(CONFIDENT_SAMPLES - 1):
            await learning.learn("veo3-young", [(TOTAL, 60.0)])
        assert len((await learning.cached("veo3-young", now + soon))[TOTAL]) == CONFIDENT_SAMPLES
        await learning.learn("veo3-young", [(TOTAL, 60.0)])
        kept = await learning.cached("veo3-young", now + 2 * soon)
        assert len(kept[TOTAL]) == CONFIDENT_SAMPLES  # confident: kept for a refresh
        later = await learning.cached("veo3-young", now + soon + learning.refresh + 0.01)
        assert len(later[TOTAL]) == CONFIDENT_SAMPLES + 1

    run(settings, body)
