"""The arq jobs, by name, and how they are enqueued: one job id per task and per delivery."""

from __future__ import annotations

import time

from arq.connections import ArqRedis, RedisSettings

from tracker import keys
from tracker.settings import Settings

POLL_TASK = "poll_task"
DELIVER_WEBHOOK = "deliver_webhook"
SWEEP_OVERDUE = "sweep_overdue"

# Room past the deadline so a wake-up never expires before it can end its task; arq's default
# expiry (24 h) would silently end a chain.
_EXPIRY_MARGIN = 3600.0


async def enqueue_poll(
    redis: ArqRedis, settings: Settings, task_id: str, *, at: float, deadline_at: float
) -> bool:
    """Wake the poller of `task_id` at `at`. False if its job already exists (arq refuses)."""
    now = time.time()
    job = await redis.enqueue_job(
        POLL_TASK,
        task_id,
        _job_id=keys.poll_job(task_id),
        _defer_by=max(0.0, at - now),
        _expires=max(0.0, deadline_at - now) + settings.job_timeout + _EXPIRY_MARGIN,
    )
    return job is not None


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


def redis_settings(redis_url: str) -> RedisSettings:
    """arq's connection settings for `redis_url` (the worker's)."""
    return RedisSettings.from_dsn(redis_url)


def connect(redis_url: str) -> ArqRedis:
    """A Redis client that can also enqueue jobs, for the API and the CLI.

    Unlike arq's `create_pool` it does not connect up front, so the API starts while Redis
    is down and answers 503 until it is back.
    """
    client: ArqRedis = ArqRedis.from_url(
        redis_url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
    )
    return client
