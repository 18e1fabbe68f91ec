"""A Sentinel failover mid-run: a primary, a replica and a sentinel on loopback (the same
`redis-server` binary, the sentinel in `--sentinel` mode); the tracker is given only the
sentinel's address (`redis+sentinel://…`), and follows the primary when it moves."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.faults.audit import across
from tests.support import WorkerProcess, create_client, wait_for
from tracker.devtools.receiver import Receiver
from tracker.devtools.simulator import Simulator
from tracker.embedded_redis import EmbeddedRedis, find_redis_server, free_port
from tracker.settings import Settings

pytestmark = pytest.mark.slow


@dataclasses.dataclass
class Sentinelled:
    primary: EmbeddedRedis
    replica: EmbeddedRedis
    sentinel_port: int

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/tracked/0"

    def sentinel(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.sentinel_port, socket_timeout=2)

    def primary_port(self) -> int:
        with self.sentinel() as conn:
            _, port = conn.execute_command("SENTINEL", "get-master-addr-by-name", "tracked")
        return int(port)


@pytest.fixture
def sentinelled(tmp_path: Path) -> Iterator[Sentinelled]:
    primary = EmbeddedRedis(tmp_path / "primary")
    primary.start()
    replica = EmbeddedRedis(
        tmp_path / "replica", extra_args=["--replicaof", "127.0.0.1", str(primary.port)]
    )
    replica.start()
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor tracked 127.0.0.1 {primary.port} 1\n"
        "sentinel down-after-milliseconds tracked 1000\n"
        "sentinel failover-timeout tracked 4000\n"
    )
    process = subprocess.Popen(
        [find_redis_server(), str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    setup = Sentinelled(primary, replica, port)
    try:

        def ready() -> bool:
            try:
                with setup.sentinel() as conn:
                    replicas = conn.execute_command("SENTINEL", "replicas", "tracked")
                with redis.Redis(host="127.0.0.1", port=replica.port) as conn:
                    linked = conn.info("replication")["master_link_status"] == "up"
            except redis.RedisError:
                return False
            return bool(replicas) and linked

        wait_for(ready, 30, "the sentinel to see the primary and its replica")
        yield setup
    finally:
        process.terminate()
        process.wait(10)
        replica.stop()
        primary.stop()


def test_a_failover_mid_run_loses_nothing(
    sentinelled: Sentinelled,
    settings: Settings,
    simulator: Simulator,
    receiver: Receiver,
    start_api: Callable[[Settings], httpx.Client],
    start_worker: Callable[[Settings], WorkerProcess],
) -> None:
    url = sentinelled.url
    # A registration is answered 201 only once the replica has it: the writes a demoted
    # primary takes in its last moments are lost, and those answers must not say otherwise.
    over_sentinel = dataclasses.replace(settings, redis_url=url, redis_wait_replicas=1)
    api = start_api(over_sentinel)
    start_worker(over_sentinel)
    client = create_client(url)

    def fail_over() -> None:
        old = sentinelled.primary_port()
        with sentinelled.sentinel() as conn:
            conn.execute_command("SENTINEL", "failover", "tracked")
        wait_for(lambda: sentinelled.primary_port() != old, 30, "the replica to be promoted")

    across(fail_over, api, client, simulator, receiver, url)
