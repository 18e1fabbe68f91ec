"""The sweeper: re-enqueue every delivery whose next attempt is overdue; delete rotated-out
webhook secrets whose overlap has ended.

A delivery's wake-up is lost when its arq job is (a Redis failover, an expired job key, a
worker that died before queueing a retry). Enqueueing under the same job id is refused while
the job exists, so sweeping never makes a second sender. Polls need no sweeping: a due task is
in the due set until a poller claims it, and a claim that is never finished runs out.
"""

from __future__ import annotations

import logging
import time

from tracker.core.records import DeliveryState
from tracker.store import queue
from workers.context import WorkerContext

log = logging.getLogger("tracker.sweep")

BATCH = 1000


async def sweep_overdue(ctx: WorkerContext) -> int:
    """Re-enqueue overdue deliveries; returns how many jobs were enqueued anew."""
    settings, store, redis = ctx["settings"], ctx["store"], ctx["redis"]
    now = time.time()
    before = now - settings.sweep_grace
    revived = 0
    for delivery_id in await store.deliveries.overdue(before, BATCH):
        found = await store.deliveries.get(delivery_id)
        if found is not None and found.state is DeliveryState.PENDING:
            revived += await queue.enqueue_delivery(redis, settings, delivery_id, at=now)
    if revived:
        log.warning("sweeper re-enqueued %d overdue deliveries", revived)
    # A rotated-out secret is deleted when its overlap ends, even for a client with no
    # delivery to read it (and so to delete it) meanwhile.
    await store.clients.purge_all_previous(now)
    return revived
