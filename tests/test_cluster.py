"""The Redis Cluster the tests start (issue 26): formed from the embedded `redis-server` with
no outside tool, its slots spread over three primaries, and a primary's failover survived;
and arq on a Redis of its own, as a cluster deployment needs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import redis
from redis.cluster import ClusterNode, RedisCluster

from tests.support import Trip, wait_for
from tracker.devtools.cluster import SLOTS, EmbeddedCluster
from tracker.embedded_redis import EmbeddedRedis
from tracker.settings import Settings


def test_the_cluster_spreads_keys_and_survives_a_primarys_failover(
    redis_cluster: EmbeddedCluster,
) -> None:
    nodes = [ClusterNode("127.0.0.1", n.port) for n in redis_cluster.primaries]
    client = RedisCluster(startup_nodes=nodes, cluster_error_retry_attempts=10)
    try:
        assert redis_cluster.url.startswith("redis+cluster://127.0.0.1:")
        owned = [
            sum(int(end) - int(start) + 1 for start, end in info["slots"])
            for info in client.cluster_nodes().values()
            if "master" in info["flags"]
        ]
        assert sorted(owned) == sorted([SLOTS // 3, SLOTS // 3, SLOTS - 2 * (SLOTS // 3)])
        for n in range(300):
            client.set(f"k{n}", n)
        per_shard = [redis.Redis(port=p.port).dbsize() for p in redis_cluster.primaries]
        assert all(count > 50 for count in per_shard) and sum(per_shard) == 300
        # A primary dies: its replica takes over its slots, and its keys are read again.
        victim = redis_cluster.primaries[0]
        mine = next(f"k{n}" for n in range(300) if client.keyslot(f"k{n}") < SLOTS // 3)
        victim.kill()

        def read_again() -> bool:
            try:
                return client.get(mine) is not None
            except redis.RedisError:
                return False

        wait_for(read_again, 30, "the replica promoted")
        replica = redis_cluster.replicas[0]
        assert redis.Redis(port=replica.port).info("replication")["role"] == "master"
    finally:
        client.close()


def test_arq_keeps_its_frame_on_a_redis_of_its_own(
    settings: Settings, launch: Callable[..., Trip], tmp_path: Path, redis_url: str
) -> None:
    """TRACKER_ARQ_REDIS_URL: the worker's frame and cron on one Redis, the records on
    REDIS_URL (what a cluster deployment needs, arq not running on a cluster)."""
    with EmbeddedRedis(tmp_path / "arq") as arq_redis:
        trip = launch(dataclasses.replace(settings, arq_redis_url=arq_redis.url))
        trip.round_trip(scenario="success")
        records, frame = redis.Redis.from_url(redis_url), redis.Redis.from_url(arq_redis.url)
        try:
            wait_for(lambda: any(frame.scan_iter(match="arq:*")), 30, "arq's keys")
            assert not any(records.scan_iter(match="arq:*"))
            assert not any(frame.scan_iter(match="qrt:*"))
            assert any(records.scan_iter(match="qrt:task:*"))
        finally:
            records.close()
            frame.close()
