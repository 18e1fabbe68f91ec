"""The arq jobs, by name, and how they are enqueued (one job id per delivery); and the Redis
connections of the API, the CLI and the workers."""

from __future__ import annotations

import time

from arq.connections import ArqRedis, RedisSettings
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tracker import keys
from tracker.settings import Settings

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


_LOST = [ConnectionError, TimeoutError, RedisConnectionError, RedisTimeoutError]


def redis_settings(redis_url: str) -> RedisSettings:
    """The worker's connection: it waits for Redis, and retries every command with backoff.

    A worker that loses Redis (a restart, a failover) so pauses, and goes on where it was when
    Redis is back, without a restart of its own.
    """
    settings = RedisSettings.from_dsn(redis_url)
    settings.conn_timeout = 2
    settings.conn_retries = 10**9  # at start-up: wait for Redis, one try a second
    settings.retry_on_timeout = True
    settings.retry_on_error = _LOST
    settings.retry = Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=-1)
    return settings


def connect(redis_url: str) -> ArqRedis:
    """A Redis client that can also enqueue jobs, for the API and the CLI.

    Unlike the worker's it gives up quickly (a blip is retried, an outage is not), so the API
    answers 503 at once while Redis is away; and it does not connect up front, so the API
    starts while Redis is down.
    """
    client: ArqRedis = ArqRedis.from_url(
        redis_url,
        socket_connect_timeout=1,
        socket_timeout=5,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=2),
        retry_on_error=_LOST,
    )
    return client
