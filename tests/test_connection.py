"""Where the tracker finds Redis: one URL, or the sentinels that name the primary."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from tracker.store.cluster import ClusterAddress, cluster_address
from tracker.store.connection import (
    HiredisPacking,
    SentinelAddress,
    connect,
    pack_with_hiredis,
    redis_settings,
    sentinel_address,
)


def test_a_plain_url_names_no_sentinel() -> None:
    assert sentinel_address("redis://127.0.0.1:6379/0") is None
    assert redis_settings("redis://127.0.0.1:6379/2").database == 2


@pytest.mark.parametrize(
    ("url", "address"),
    [("redis+sentinel://10.0.0.5:26379/tracked", SentinelAddress([("10.0.0.5", 26379)], "tracked")),
     ("redis+sentinel://:s3cr%40t@a:1,b:2,c/tracked/3",
      SentinelAddress([("a", 1), ("b", 2), ("c", 26379)], "tracked", 3, "s3cr@t"))],
)  # fmt: skip
def test_a_sentinel_url_names_its_sentinels_service_db_and_password(
    url: str, address: SentinelAddress
) -> None:
    assert sentinel_address(url) == address


def test_the_worker_follows_sentinel_through_arq() -> None:
    settings = redis_settings("redis+sentinel://a:1,b:2/tracked/1")
    assert (settings.sentinel, settings.sentinel_master, settings.host, settings.database) == (
        True, "tracked", [("a", 1), ("b", 2)], 1,
    )  # fmt: skip


def test_a_sentinel_url_without_a_service_is_refused() -> None:
    with pytest.raises(ValueError, match="service"):
        sentinel_address("redis+sentinel://a:1")


COMMANDS: list[tuple[Any, ...]] = [
    ("PING",),
    ("SCRIPT LOAD", "return 1"),
    (b"CLIENT SETNAME", b"x"),
    ("EVALSHA", "ab" * 20, 2, "k:1", b"k:\x00\xff", 0, -7, 1.5, 0.1 + 0.2, 1e300, "é✓", ""),
    ("HSET", "h", "f", memoryview(b"mem")),
]


class Packed(HiredisPacking, Connection):
    """A plain connection that packs with hiredis, as `pack_with_hiredis` makes them."""


@pytest.mark.parametrize("command", COMMANDS)
def test_hiredis_packs_every_command_as_redis_py_does(command: tuple[Any, ...]) -> None:
    plain, packed = Connection(encoding="utf-8"), Packed(encoding="utf-8")
    assert b"".join(packed.pack_command(*command)) == b"".join(plain.pack_command(*command))


def test_a_value_redis_cannot_take_is_a_data_error_as_in_redis_py() -> None:
    packed = Packed()
    with pytest.raises(DataError):
        packed.pack_command("SET", "k", None)


def test_the_api_client_packs_with_hiredis_against_a_real_redis(redis_url: str) -> None:
    async def roundtrip() -> list[Any]:
        redis = connect(redis_url)
        try:
            assert issubclass(redis.connection_pool.connection_class, HiredisPacking)
            await redis.hset("packing:h", mapping={"f": "é✓", "n": 2, "x": 0.1 + 0.2})
            return [
                await redis.hgetall("packing:h"),
                await redis.eval("return ARGV[1]", 0, b"\xff"),
            ]
        finally:
            await redis.delete("packing:h")
            await redis.aclose()

    found, echoed = asyncio.run(roundtrip())
    assert found == {b"f": "é✓".encode(), b"n": b"2", b"x": b"0.30000000000000004"}
    assert echoed == b"\xff"


def test_connections_opened_before_packing_was_set_pack_with_hiredis_too(redis_url: str) -> None:
    # As at a worker's start-up: arq pings Redis with a plain client before `startup` runs.
    async def roundtrip() -> tuple[list[type], bytes]:
        redis = Redis.from_url(redis_url)
        try:
            await redis.ping()
            pack_with_hiredis(redis)
            opened = list(redis.connection_pool._available_connections)
            echoed = await redis.eval("return ARGV[1]", 0, "é✓")
            return [type(connection) for connection in opened], echoed
        finally:
            await redis.aclose()

    kinds, echoed = asyncio.run(roundtrip())
    assert kinds and all(issubclass(kind, HiredisPacking) for kind in kinds)
    assert echoed == "é✓".encode()


@pytest.mark.parametrize(
    ("url", "address"),
    [("redis+cluster://10.0.0.5:7000/", ClusterAddress((("10.0.0.5", 7000),))),
     ("redis+cluster://app:s3cr%40t@a:1,b,c:3/",
      ClusterAddress((("a", 1), ("b", 6379), ("c", 3)), "app", "s3cr@t")),
     ("rediss+cluster://:pw@a:1/", ClusterAddress((("a", 1),), None, "pw", tls=True)),
     ("redis://a:1/0", None)],
)  # fmt: skip
def test_a_cluster_url_names_some_nodes_credentials_and_tls(
    url: str, address: ClusterAddress | None
) -> None:
    assert cluster_address(url) == address


def test_a_cluster_url_without_a_node_is_refused() -> None:
    with pytest.raises(ValueError, match="one or more nodes"):
        cluster_address("redis+cluster:///")
