"""Redis connections: the workers' (which wait out an outage) and the API's and CLI's (which
answer at once while Redis is away)."""

from __future__ import annotations

from arq.connections import ArqRedis, RedisSettings
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Errors after which a command is tried again on a fresh connection. READONLY is what a primary
# demoted by a failover answers: reconnecting (through Sentinel, to the new primary) heals it.
_LOST = [ConnectionError, TimeoutError, RedisConnectionError, RedisTimeoutError, ReadOnlyError]


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
