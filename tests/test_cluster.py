"""Redis Cluster (issue 26): the cluster the tests start (formed from the embedded
`redis-server` with no outside tool, its slots spread over three primaries); the tracker on it
through a failover of the records' primary and a move of their slot to another primary, with
nothing lost and no event sent under two ids; arq on a Redis of its own, as a cluster
deployment needs. (The end-to-end tests run on a cluster too: `pytest.mark.cluster`.)"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from tests.faults.audit import across
from tests.support import Trip, WorkerProcess, create_client, partitions_for, wait_for
from tracker.devtools.cluster import SLOTS, EmbeddedCluster
from tracker.devtools.receiver import Receiver
from tracker.devtools.simulator import Simulator
from tracker.embedded_redis import EmbeddedRedis
from tracker.errors import ConfigurationError
from tracker.settings import Settings
from tracker.store import keys
from tracker.store.cluster import SlotRedirect
from tracker.store.connection import connect
from workers.worker import create_worker

RECORDS_SLOT = key_slot(keys.PREFIX.encode())


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    """A cluster of the test's own, to damage."""
    with EmbeddedCluster(tmp_path / "cluster") as formed:
        yield formed


@pytest.mark.slow
@pytest.mark.parametrize("disruption", ["failover", "reshard"])
def test_the_records_primary_failing_over_or_their_slot_moving_mid_run_loses_nothing(
    disruption: str,
    cluster: EmbeddedCluster,
    settings: Settings,
    redis_server: EmbeddedRedis,
    simulator: Simulator,
    receiver: Receiver,
    start_api: Callable[[Settings], httpx.Client],
    start_worker: Callable[[Settings], WorkerProcess],
) -> None:
    """The primary of the client's records killed (its replica promoted), or their slot
    moved to another primary (CLUSTER SETSLOT and MIGRATE, as an operator reshards), mid-run."""
    # A registration is answered 201 only once a replica has it: what a primary takes in its
    # last moments before a failover is lost, and those answers must not say otherwise.
    settings = dataclasses.replace(
        settings, redis_url=cluster.url, arq_redis_url=redis_server.url, redis_wait_replicas=1,
        partitions=partitions_for(cluster.url),
    )  # fmt: skip
    client = create_client(cluster.url)
    tag = keys.partition_tags(settings.partitions)[
        keys.partition_of(client["id"], settings.partitions)
    ]
    slot = key_slot(("{" + tag + "}").encode())
    source = cluster.owner_of(slot)

    def fail_over() -> None:
        source.kill()
        wait_for(lambda: cluster.owner_of(slot) is not source, 30, "a promotion")
        # Restarted (as an orchestrator would), it rejoins as the new primary's replica: the
        # writes that wait for a replica (TRACKER_REDIS_WAIT_REPLICAS) are answered again.
        source.start()

    def reshard() -> None:
        target = next(p for p in cluster.primaries if p is not source)
        assert cluster.move_slot(slot, target) > 0
        assert cluster.owner_of(slot) is target

    api = start_api(settings)
    start_worker(settings)
    chosen = fail_over if disruption == "failover" else reshard
    across(chosen, api, client, simulator, receiver, cluster.url)


def test_a_key_outside_the_records_tag_is_an_error_not_a_retry(
    redis_cluster: EmbeddedCluster,
) -> None:
    """A MOVED for the records' slot is followed; one for another slot is a key the layout
    forgot, said at once (a worker would otherwise retry it for ever)."""
    owner = redis_cluster.owner_of(RECORDS_SLOT)
    outside = next(f"k{n}" for n in range(1000)
                   if redis_cluster.owner_of(key_slot(f"k{n}".encode())) is not owner)  # fmt: skip

    async def run() -> None:
        client = connect(redis_cluster.url)
        try:
            await client.set(keys.PREFIX + "probe", "1")
            with pytest.raises(redis.ResponseError, match="MOVED") as raised:
                await client.get(outside)
            assert not isinstance(raised.value, SlotRedirect)
            await client.delete(keys.PREFIX + "probe")
        finally:
            await client.aclose()

    asyncio.run(run())


def test_a_worker_on_a_cluster_needs_a_redis_of_its_own_for_arq() -> None:
    with pytest.raises(ConfigurationError, match="TRACKER_ARQ_REDIS_URL"):
        create_worker(Settings(redis_url="redis+cluster://127.0.0.1:7000/"))


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
            assert not any(frame.scan_iter(match=keys.PREFIX + "*"))
            assert any(records.scan_iter(match=keys.HOME.task("*")))
        finally:
            records.close()
            frame.close()
