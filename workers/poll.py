"""One poll of a claimed task: a GET upstream, the decision of `tracker.polling`, stored."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

import httpx
from arq import Retry

from tracker import estimates, metrics, polling, queue
from tracker.domain import Delivery, Task, TaskState
from tracker.settings import Settings
from tracker.upstream import Completed, Outcome, Running, TryLater, read_response
from workers.context import WorkerContext
from workers.deliver import deliver_webhook

log = logging.getLogger("tracker.poll")


async def query_upstream(
    http: httpx.AsyncClient, settings: Settings, task_id: str, *, seen_running: bool
) -> Outcome:
    """Ask QuickRouter once about `task_id`; transport failures mean "try later"."""
    headers = {"accept": "application/json"}
    if settings.quickrouter_api_key:
        headers["authorization"] = f"Bearer {settings.quickrouter_api_key}"
    started = time.perf_counter()
    try:
        response = await http.get(
            settings.quickrouter_base_url.rstrip("/") + "/v1/video/query",
            params={"id": task_id},
            headers=headers,
            timeout=settings.upstream_timeout,
        )
    except httpx.TimeoutException:
        metrics.UPSTREAM_RESPONSES.labels("timeout").inc()
        return TryLater("upstream timed out")
    except httpx.HTTPError as exc:
        metrics.UPSTREAM_RESPONSES.labels("error").inc()
        return TryLater(f"upstream unreachable ({type(exc).__name__})")
    finally:
        metrics.UPSTREAM_SECONDS.observe(time.perf_counter() - started)
    metrics.UPSTREAM_RESPONSES.labels(str(response.status_code)).inc()
    return read_response(
        response.status_code,
        response.headers,
        response.content,
        seen_running=seen_running,
        now=time.time(),
    )


async def poll_task(ctx: WorkerContext, task_id: str, task: Task | None) -> None:
    """Poll a claimed task once; end it with its deliveries, or schedule its next poll.

    `task` is its record as read when it was claimed.
    """
    settings, store = ctx["settings"], ctx["store"]
    if task is None or task.state is not TaskState.TRACKING:
        await store.forget_due(task_id)  # ended, cancelled or expired: never due again
        return
    wait = await ctx["bucket"].take()
    if wait > 0:  # the key's shared quota is spent: come back when a token is due
        await store.reschedule(task_id, time.time() + wait * (1 + ctx["rng"].random()))
        return
    outcome = await query_upstream(
        ctx["http"], settings, task_id, seen_running=task.upstream_status is not None
    )
    now = time.time()
    polls = task.polls + 1
    metrics.POLLS.labels(type(outcome).__name__.lower()).inc()
    model = polling.model_of(task_id) or "unknown"
    origin, history = _timeline(task, outcome, now)
    predicted = None
    if isinstance(outcome, Running):
        learned = await ctx["learned"].get(store, model, now)
        predicted = estimates.next_poll_at(
            now, origin, history, learned, settings.poll_first_delay / 20, settings.poll_probe_step
        )
    step = polling.next_step(
        outcome,
        task_id=task_id,
        polls=polls,
        rejections=task.rejections,
        last_status=task.upstream_status,
        now=now,
        deadline_at=task.deadline_at,
        settings=settings,
        draw=ctx["rng"].random(),
        predicted_at=predicted,
    )
    if isinstance(step, polling.Finish):
        deliveries = await store.finish(
            task_id, result=step.result, snapshot=step.snapshot, polls=polls, now=now
        )
        log.info(
            "task ended",
            extra={"task_id": task_id, "state": step.result.state, "polls": polls},
        )
        metrics.TASKS_ENDED.labels(step.result.state.value).inc()
        await deliver_now(ctx, deliveries)
        if isinstance(outcome, Completed):
            ended = estimates.status_since(outcome.body, now)
            await store.learn(model, estimates.samples(history, origin, ended))
        return
    if isinstance(outcome, TryLater):
        log.info("upstream: %s", outcome.reason, extra={"task_id": task_id})
    deliveries = await store.record_poll(
        task_id,
        polls=polls,
        rejections=step.rejections,
        status=step.status,
        previous_status=task.upstream_status,
        snapshot=step.snapshot,
        next_poll_at=now + step.delay,
        now=now,
        origin=origin,
        history=history,
    )
    await enqueue_deliveries(ctx, deliveries, now)


def _timeline(
    task: Task, outcome: Outcome, now: float
) -> tuple[float, tuple[tuple[str, float], ...]]:
    """When the task was created upstream, and each status seen with when it began."""
    body = outcome.body if isinstance(outcome, Running | Completed) else task.snapshot
    origin = task.origin or estimates.created_at(body, task.task_id, task.created_at)
    if not isinstance(outcome, Running) or outcome.status == task.upstream_status:
        return origin, task.history
    since = estimates.status_since(outcome.body, now)
    return origin, (*task.history, (outcome.status, since))


async def deliver_now(ctx: WorkerContext, deliveries: Iterable[Delivery]) -> None:
    """Make each final delivery's first attempt here, saving the hop through the queue.

    A delivery that fails is queued for its next attempt; one interrupted by a crash is still
    `pending` in Redis with its attempt due, so the sweeper queues it.
    """

    async def attempt(delivery: Delivery) -> None:
        try:
            await deliver_webhook(ctx, delivery.id)
        except Retry as retry:
            at = time.time() + (retry.defer_score or 0) / 1000
            await queue.enqueue_delivery(ctx["redis"], ctx["settings"], delivery.id, at=at)

    await asyncio.gather(*(attempt(d) for d in deliveries))


async def enqueue_deliveries(
    ctx: WorkerContext, deliveries: Iterable[Delivery], now: float
) -> None:
    """Wake each new delivery now; the sweeper catches any lost on the way."""
    for delivery in deliveries:
        await queue.enqueue_delivery(ctx["redis"], ctx["settings"], delivery.id, at=now)
