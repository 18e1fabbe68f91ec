"""The sweeper: re-enqueue every task and delivery whose wake-up is overdue.

A wake-up is lost when its arq job is (a Redis failover, an expired job key). Enqueueing under
the same job id is refused while the job exists, so sweeping never makes a second poller.
"""

from __future__ import annotations

import logging
import time

from tracker import queue
from tracker.domain import DeliveryState, TaskState
from workers.context import WorkerContext

log = logging.getLogger("tracker.sweep")

BATCH = 1000


async def sweep_overdue(ctx: WorkerContext) -> int:
    """Re-enqueue overdue wake-ups; returns how many jobs were enqueued anew."""
    settings, store, redis = ctx["settings"], ctx["store"], ctx["redis"]
    now = time.time()
    before = now - settings.sweep_grace
    revived = 0
    for task_id in await store.overdue_tasks(before, BATCH):
        task = await store.task(task_id)
        if task is not None and task.state is TaskState.TRACKING:
            revived += await queue.enqueue_poll(
                redis, settings, task_id, at=now, deadline_at=task.deadline_at
            )
    for delivery_id in await store.overdue_deliveries(before, BATCH):
        found = await store.delivery(delivery_id)
        if found is not None and found.state is DeliveryState.PENDING:
            revived += await queue.enqueue_delivery(redis, settings, delivery_id, at=now)
    if revived:
        log.warning("sweeper re-enqueued %d overdue wake-ups", revived)
    return revived
