"""Redis connections: the workers' (which wait out an outage) and the API's and CLI's (which
answer at once while Redis is away), to one Redis (`redis://…`), to the primary that
Sentinel names (`redis+sentinel://…`), or to the primaries of a Redis Cluster that serve the
home tag's slot and each partition's (`redis+cluster://…`, `tracker.store.cluster`), each
followed through a failover."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis
from arq.connections import ArqRedis, RedisSettings, create_pool
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.sentinel import Sentinel as SyncSentinel

from tracker.store import keys
from tracker.store.cluster import ClusterAddress, cluster_address, cluster_pool

# Errors after which a command is tried again on a fresh connection. READONLY is what a primary
# demoted by a failover answers: reconnecting (through Sentinel, to the new primary) heals it.
_LOST = [ConnectionError, TimeoutError, RedisConnectionError, RedisTimeoutError, ReadOnlyError]


SENTINEL_SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelAddress:
    """`redis+sentinel://[:password@]host:port[,host:port…]/service[/db]`."""

    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    password: str | None = None


def sentinel_address(redis_url: str) -> SentinelAddress | None:
    """The Sentinel setup a `redis+sentinel://` URL names; None for any other URL."""
    parts = urlsplit(redis_url)
    if parts.scheme != SENTINEL_SCHEME:
        return None
    credentials, _, hosts = parts.netloc.rpartition("@")
    password = unquote(credentials.partition(":")[2]) or None if credentials else None
    sentinels = []
    for host in hosts.split(","):
        name, _, port = host.rpartition(":") if ":" in host else (host, "", "")
        sentinels.append((name, int(port) if port else DEFAULT_SENTINEL_PORT))
    path = [part for part in parts.path.split("/") if part]
    if not path or not sentinels:
        raise ValueError("a redis+sentinel URL names sentinels and a service: "
                         "redis+sentinel://host:26379/mymaster/0")  # fmt: skip
    return SentinelAddress(sentinels, path[0], int(path[1]) if len(path) > 1 else 0, password)


def redis_settings(redis_url: str) -> RedisSettings:
    """The worker's connection: it waits for Redis, and retries every command with backoff.

    A worker that loses Redis (a restart, a failover) so pauses, and goes on where it was when
    Redis is back, without a restart of its own.
    """
    sentinel = sentinel_address(redis_url)
    if sentinel is not None:
        settings = RedisSettings(
            host=sentinel.sentinels,
            sentinel=True,
            sentinel_master=sentinel.service,
            database=sentinel.db,
            password=sentinel.password,
        )
    else:
        settings = RedisSettings.from_dsn(redis_url)
    settings.conn_timeout = 2
    settings.conn_retries = 10**9  # at start-up: wait for Redis, one try a second
    settings.retry_on_timeout = True
    settings.retry_on_error = _LOST
    settings.retry = _patient_retry()
    return settings


def _patient_retry() -> Retry:
    return Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=-1)


def _patient_options() -> dict[str, Any]:
    """A worker's connection options on a cluster: as patient as `redis_settings`'s."""
    return {"socket_connect_timeout": 2, "retry_on_timeout": True, "retry_on_error": _LOST,
            "retry": _patient_retry()}  # fmt: skip


def _quick_options() -> dict[str, Any]:
    """The API's and the CLI's connection options (`connect`)."""
    return {"socket_connect_timeout": 1, "socket_timeout": 5, "health_check_interval": 30,
            "retry": Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=2),
            "retry_on_error": _LOST}  # fmt: skip


def _on_slot(address: ClusterAddress, tag: str, options: dict[str, Any]) -> ArqRedis:
    client: ArqRedis = ArqRedis.from_pool(cluster_pool(address, "{" + tag + "}", **options))
    pack_with_hiredis(client)
    return client


async def connect_records(redis_url: str) -> ArqRedis:
    """The worker's connection to the records, when arq has a Redis of its own
    (TRACKER_ARQ_REDIS_URL): as patient as `redis_settings`'s."""
    address = cluster_address(redis_url)
    if address is None:
        return await create_pool(redis_settings(redis_url))
    return _on_slot(address, keys.HOME_TAG, _patient_options())


def connect_partitions(
    redis_url: str, home: ArqRedis, count: int, *, patient: bool
) -> list[ArqRedis]:
    """One connection per partition (`keys.partition_tags`): `home` for each on one Redis or
    through Sentinel, or for the one partition that is the home tag; on a Redis Cluster, a
    pool on each partition's slot, patient as a worker's or quick as the API's."""
    address = cluster_address(redis_url)
    if address is None or count == 1:
        return [home] * count
    options = _patient_options() if patient else _quick_options()
    return [_on_slot(address, tag, options) for tag in keys.partition_tags(count)]


def connect(redis_url: str) -> ArqRedis:
    """A Redis client that can also enqueue jobs, for the API and the CLI.

    Unlike the worker's it gives up quickly (a blip is retried, an outage is not), so the API
    answers 503 at once while Redis is away; and it does not connect up front, so the API
    starts while Redis is down.
    """
    options = _quick_options()
    sentinel = sentinel_address(redis_url)
    if sentinel is not None:
        sentinels = Sentinel(sentinel.sentinels, socket_timeout=1, socket_connect_timeout=1)
        primary: SentinelArqRedis = sentinels.master_for(
            sentinel.service,
            redis_class=SentinelArqRedis,
            db=sentinel.db,
            password=sentinel.password,
            **options,
        )
        primary.sentinel = sentinels
        pack_with_hiredis(primary)
        return primary
    address = cluster_address(redis_url)
    if address is not None:
        return _on_slot(address, keys.HOME_TAG, options)
    client: ArqRedis = ArqRedis.from_url(redis_url, **options)
    pack_with_hiredis(client)
    return client


class HiredisPacking:
    """Packs each command with hiredis (C) instead of redis-py's Python loop, as redis-py 6's
    own synchronous client does; arq holds us to redis-py 5, whose asyncio client packs in
    Python. Packing the records of a busy worker's pipelines took a tenth of its CPU.

    A mixin, put before a redis-py connection class (`pack_with_hiredis`)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # A command name with a space ("SCRIPT LOAD") is two words on the wire.
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:  # what redis-py raises for a value it cannot send
            raise DataError(str(exc)) from exc


def pack_with_hiredis(redis: Redis) -> None:
    """Make the idle connections of `redis`, and those it opens from now on, pack with hiredis
    (`HiredisPacking`), whatever their kind (TCP, TLS, a Unix socket, Sentinel's)."""
    pool = redis.connection_pool
    if not issubclass(pool.connection_class, HiredisPacking):
        pool.connection_class = type(
            pool.connection_class.__name__, (HiredisPacking, pool.connection_class), {}
        )
    # Those it opened already (arq opens one at a worker's start-up) pack with hiredis too:
    # the pool hands out its most recently freed connection first, so one of them would carry
    # most commands. The class only adds a method, so nothing in a connection depends on it.
    for opened in pool._available_connections:
        opened.__class__ = pool.connection_class


class SentinelArqRedis(ArqRedis):
    """The primary that Sentinel names; closing it closes the connections to the sentinels."""

    sentinel: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinel is not None:
            for client in self.sentinel.sentinels:
                await client.aclose()


@contextlib.contextmanager
def connect_sync(redis_url: str, tag: str = keys.HOME_TAG) -> Iterator[SyncRedis]:
    """A blocking client, for the metrics gauges read at scrape time (on a cluster, to the
    primary that serves `tag`'s slot); closed on exit."""
    address = cluster_address(redis_url)
    if address is not None:
        nodes = [ClusterNode(host, port) for host, port in address.nodes]
        credentials = {"username": address.username, "password": address.password,
                       "ssl": address.tls, "socket_timeout": 2}  # fmt: skip
        with SyncRedisCluster(startup_nodes=nodes, **credentials) as cluster:
            owner = cluster.get_node_from_key("{" + tag + "}")
        with SyncRedis(host=owner.host, port=owner.port, **credentials) as client:
            yield client
        return
    sentinel = sentinel_address(redis_url)
    if sentinel is None:
        with SyncRedis.from_url(redis_url, socket_timeout=2) as client:
            yield client
        return
    sentinels = SyncSentinel(sentinel.sentinels, socket_timeout=1)
    try:
        with sentinels.master_for(
            sentinel.service, db=sentinel.db, password=sentinel.password, socket_timeout=2
        ) as client:
            yield client
    finally:
        for each in sentinels.sentinels:
            each.close()
