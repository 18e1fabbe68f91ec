"""A real Redis Cluster on loopback, from the embedded `redis-server`: for the tests and the
benchmarks (issue 26). No outside tool: the slots are assigned with `CLUSTER ADDSLOTS`, the
nodes introduced with `CLUSTER MEET`, the replicas attached with `CLUSTER REPLICATE`."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import redis

from tracker.embedded_redis import EmbeddedRedis, free_port
from tracker.errors import ConfigurationError

SLOTS = 16384
BUS_OFFSET = 10000  # a node's cluster bus listens this far above its port
CLUSTER_SCHEME = "redis+cluster"


class EmbeddedCluster:
    """`primaries` shards, each with `replicas` replicas; `url` is `redis+cluster://…`."""

    def __init__(
        self, data_dir: Path, primaries: int = 3, replicas: int = 1, node_timeout_ms: int = 2000
    ) -> None:
        options = (
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(node_timeout_ms),
        )  # fmt: skip
        self.primaries = [
            EmbeddedRedis(Path(data_dir) / f"primary-{n}", bus_free_port(), extra_args=options)
            for n in range(primaries)
        ]
        self.replicas = [
            EmbeddedRedis(Path(data_dir) / f"replica-{n}-{k}", bus_free_port(), extra_args=options)
            for n in range(primaries)
            for k in range(replicas)
        ]
        self.per_primary = replicas

    @property
    def nodes(self) -> list[EmbeddedRedis]:
        return self.primaries + self.replicas

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.primaries)
        return f"{CLUSTER_SCHEME}://{hosts}/"

    def start(self, timeout: float = 30.0) -> str:
        for node in self.nodes:
            node.start()
        conns = [redis.Redis(host="127.0.0.1", port=n.port) for n in self.nodes]
        formed = False
        try:
            share = SLOTS // len(self.primaries)
            for n, conn in enumerate(conns[: len(self.primaries)]):
                last = SLOTS if n == len(self.primaries) - 1 else (n + 1) * share
                conn.execute_command("CLUSTER ADDSLOTS", *range(n * share, last))
            for conn in conns[1:]:
                conn.execute_command("CLUSTER MEET", "127.0.0.1", self.nodes[0].port)
            deadline = time.monotonic() + timeout
            self._wait(lambda: all(_known(c) == len(conns) for c in conns), deadline, "meet")
            ids = [c.execute_command("CLUSTER MYID").decode() for c in conns]
            for k, conn in enumerate(conns[len(self.primaries) :]):
                conn.execute_command("CLUSTER REPLICATE", ids[k // self.per_primary])
            primaries = len(self.primaries)
            # Every node has heard of every replica's role (gossip takes a moment): until
            # then, some node still lists a replica as a primary without slots.
            self._wait(
                lambda: all(_ok(c) and _primaries(c) == primaries for c in conns),
                deadline,
                "cluster_state:ok with every replica known",
            )
            formed = True
        finally:
            for conn in conns:
                conn.close()
            if not formed:
                self.stop()
        return self.url

    @staticmethod
    def _wait(done: Callable[[], bool], deadline: float, what: str) -> None:
        while not done():
            if time.monotonic() > deadline:
                raise ConfigurationError(f"the cluster did not reach {what}")
            time.sleep(0.05)

    def owner_of(self, slot: int) -> EmbeddedRedis:
        """The node that serves `slot` now, as the first node that answers sees it (a test may
        have killed some)."""
        for node in self.nodes:
            try:
                with redis.Redis(host="127.0.0.1", port=node.port) as conn:
                    slots = conn.execute_command("CLUSTER SLOTS")
            except redis.ConnectionError:
                continue
            for start, end, primary, *_ in slots:
                if start <= slot <= end:
                    return next(n for n in self.nodes if n.port == int(primary[1]))
            break
        raise ConfigurationError(f"no node serves slot {slot}")

    def move_slot(self, slot: int, to: EmbeddedRedis, batch: int = 50) -> int:
        """Move `slot` and its keys to the primary `to`, the way an operator reshards: mark it
        importing and migrating, MIGRATE its keys in batches, then give it to `to` everywhere.
        Returns how many keys moved."""
        source = self.owner_of(slot)
        src = redis.Redis(host="127.0.0.1", port=source.port)
        dst = redis.Redis(host="127.0.0.1", port=to.port)
        moved = 0
        try:
            src_id = src.execute_command("CLUSTER MYID").decode()
            dst_id = dst.execute_command("CLUSTER MYID").decode()
            dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
            src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
            while names := src.execute_command("CLUSTER GETKEYSINSLOT", slot, batch):
                src.execute_command("MIGRATE", "127.0.0.1", to.port, "", 0, 5000, "KEYS", *names)
                moved += len(names)
            for node in (dst, src):
                node.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
        finally:
            src.close()
            dst.close()
        return moved

    def flush(self) -> None:
        """Empty every primary (the replicas follow)."""
        for node in self.primaries:
            with redis.Redis(host="127.0.0.1", port=node.port) as conn:
                if conn.info("replication")["role"] == "master":
                    conn.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> EmbeddedCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def bus_free_port() -> int:
    """A free port whose cluster bus port (10,000 above it) is free and valid too."""
    while True:
        port = free_port()
        if port + BUS_OFFSET > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + BUS_OFFSET))
            except OSError:
                continue
        return port


def _known(conn: redis.Redis) -> int:
    """How many nodes this one knows (itself included), past the handshake."""
    nodes = conn.execute_command("CLUSTER NODES")  # redis-py parses it: address -> fields
    return sum(1 for node in nodes.values() if "handshake" not in node["flags"])


def _primaries(conn: redis.Redis) -> int:
    """How many primaries this node knows of."""
    nodes = conn.execute_command("CLUSTER NODES")
    return sum(1 for node in nodes.values() if "master" in node["flags"])


def _ok(conn: redis.Redis) -> bool:
    return bool(conn.execute_command("CLUSTER INFO").get("cluster_state") == "ok")
