"""One poll of a claimed task: a GET upstream, the decision of `tracker.core.polling`, stored."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tracker import metrics, tracing
from tracker.core import estimates, polling
from tracker.core.records import Delivery, SubscriptionState, Task, TaskState
from tracker.core.upstream import (
    Completed,
    Outcome,
    Rejected,
    RejectReason,
    Running,
    TryLater,
)
from tracker.core.upstream_keys import DENIED
from tracker.net.client import query_upstream
from tracker.store import Shard
from workers.context import WorkerContext, bucket

log = logging.getLogger("tracker.poll")


async def poll_task(ctx: WorkerContext, shard: Shard, task_id: str, task: Task | None) -> None:
    """Poll a claimed task of `shard`'s once; end it with its deliveries, or schedule its
    next poll.

    `task_id` is its tracking id (`tracker.core.ids.tracking_id`), `task` its record as read
    when it was claimed. A span of the task's trace when tracing is on.
    """
    with tracing.task_span("poll", task_id, polls=task.polls + 1 if task else None) as span:
        outcome = await _poll(ctx, shard, task_id, task)
        if span is not None and outcome is not None:
            span.set_attribute("qrtracker.outcome", type(outcome).__name__.lower())


async def _poll(
    ctx: WorkerContext, store: Shard, task_id: str, task: Task | None
) -> Outcome | None:
    if task is None or task.state is not TaskState.TRACKING:
        await store.polls.forget_due(task_id)  # ended, cancelled or expired: never due again
        return None
    outcome = await _ask_upstream(ctx, store, task_id, task)
    if outcome is not None:
        await _act_on(ctx, store, task_id, task, outcome)
    return outcome


async def _ask_upstream(
    ctx: WorkerContext, store: Shard, task_id: str, task: Task
) -> Outcome | None:
    """What QuickRouter says of the task now; None when its key's shared quota is spent (the
    poll is put off until a token is due)."""
    if task.upstream_key == DENIED:  # another client's shared-key task: as an unknown id
        return Rejected(RejectReason.UNKNOWN_TASK, "task not found")
    key = await polling_key(ctx, store, task_id, task)
    wait = await bucket(ctx, key).take()
    if wait > 0:
        retry_at = store.clock.now() + wait * (1 + ctx["rng"].random())
        await store.polls.reschedule(task_id, retry_at)
        return None
    return await query_upstream(
        ctx["http"],
        ctx["settings"],
        task.task_id,
        seen_running=task.upstream_status is not None,
        clock=store.clock.now,
        key=key,
    )


async def _act_on(
    ctx: WorkerContext, store: Shard, task_id: str, task: Task, outcome: Outcome
) -> None:
    """Decide what `outcome` means (`polling.next_step`, on what the task's model taught) and
    store it: the task's end with its deliveries, or its next poll."""
    settings = ctx["settings"]
    now = store.clock.now()
    polls = task.polls + 1
    metrics.POLLS.labels(type(outcome).__name__.lower()).inc()
    model = polling.model_of(task.task_id) or "unknown"
    origin, history = _timeline(task, outcome, now)
    predicted = None
    if isinstance(outcome, Running):
        learned = await store.learning.cached(model, now)
        predicted = estimates.next_poll_at(
            now, origin, history, learned, polling.min_gap(settings),
            settings.poll_probe_step, young_gap=settings.poll_unlearned_max_delay,
            window_gap=settings.poll_window_gap,
        )  # fmt: skip
    step = polling.next_step(
        outcome, task_id=task.task_id, polls=polls, rejections=task.rejections,
        last_status=task.upstream_status, now=now, deadline_at=task.deadline_at,
        settings=settings, draw=ctx["rng"].random(), predicted_at=predicted,
        registered_at=task.created_at,
    )  # fmt: skip
    if isinstance(step, polling.Finish):
        deliveries = await store.polls.finish(
            task_id, result=step.result, upstream=step.upstream, polls=polls, now=now
        )
        log.info(
            "task ended",
            extra={"task_id": task_id, "state": step.result.state, "polls": polls},
        )
        metrics.TASKS_ENDED.labels(step.result.state.value).inc()
        # Handed to the delivery side at once: a poll never waits for a receiver.
        wake_dispatcher(ctx, deliveries)
        if isinstance(outcome, Completed):
            ended = estimates.status_since(outcome.body, now)
            await store.learning.learn(model, estimates.samples(history, origin, ended))
        return
    if isinstance(outcome, TryLater):
        log.info("upstream: %s", outcome.reason, extra={"task_id": task_id})
    deliveries = await store.polls.record_poll(
        task_id, polls=polls, rejections=step.rejections, status=step.status,
        previous_status=task.upstream_status, upstream=step.upstream,
        next_poll_at=now + step.delay, now=now, origin=origin, history=history,
    )  # fmt: skip
    wake_dispatcher(ctx, deliveries)


async def polling_key(ctx: WorkerContext, store: Shard, task_id: str, task: Task) -> str | None:
    """The QuickRouter key to poll `task` with: the deployment's shared one, or the key its
    fingerprint names as its holder (the first registrant) keeps it, else as another of its
    live subscribers does, who holds it from then on: one client dropping its copy of a key
    never fails another's task. None once no live subscriber holds it (polls are refused)."""
    settings = ctx["settings"]
    name = task.upstream_key
    if not name:
        return settings.quickrouter_api_key
    key = await store.clients.open_upstream_key(task.key_holder, name)
    if key is not None:
        return key
    subscribers = await store.tasks.subscriptions_of(task)
    live = dict.fromkeys(s.client_id for s in subscribers if s.state is SubscriptionState.ACTIVE)
    for client_id in live:
        if client_id != task.key_holder:
            key = await store.clients.open_upstream_key(client_id, name)
            if key is not None:
                await store.tasks.hand_key_to(task_id, client_id)
                return key
    return None


def _timeline(
    task: Task, outcome: Outcome, now: float
) -> tuple[float, tuple[tuple[str, float], ...]]:
    """When the task was created upstream, and each status seen with when it began."""
    body = outcome.body if isinstance(outcome, Running | Completed) else task.upstream
    origin = task.origin or estimates.created_at(body, task.task_id, task.created_at)
    if not isinstance(outcome, Running) or outcome.status == task.upstream_status:
        return origin, task.history
    since = estimates.status_since(outcome.body, now)
    return origin, (*task.history, (outcome.status, since))


def wake_dispatcher(ctx: WorkerContext, deliveries: Sequence[Delivery]) -> None:
    """New deliveries are due now (they are in the due set): have this process's dispatcher
    look at once rather than at its next tick."""
    dispatcher = ctx.get("dispatcher")
    if deliveries and dispatcher is not None:
        dispatcher.wake()
