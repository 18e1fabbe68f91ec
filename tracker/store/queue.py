"""The arq jobs, by name, and how they are enqueued (one job id per delivery)."""

from __future__ import annotations

import time

from arq.connections import ArqRedis

from tracker.settings import Settings
from tracker.store import keys

DELIVER_WEBHOOK = "deliver_webhook"
SWEEP_OVERDUE = "sweep_overdue"

# Room past a delivery's schedule so its job never expires before the delivery ends; arq's
# default expiry (24 h) would silently end a chain of retries.
_EXPIRY_MARGIN = 3600.0


async def enqueue_delivery(
    redis: ArqRedis, settings: Settings, delivery_id: str, *, at: float
) -> bool:
    """Wake the delivery `delivery_id` at `at`. False if its job already exists."""
    now = time.time()
    job = await redis.enqueue_job(
        DELIVER_WEBHOOK,
        delivery_id,
        _job_id=keys.delivery_job(delivery_id),
        _defer_by=max(0.0, at - now),
        _expires=max(0.0, at - now) + settings.delivery_window + _EXPIRY_MARGIN,
    )
    return job is not None
