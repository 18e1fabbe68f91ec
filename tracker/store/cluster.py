"""Redis Cluster (`redis+cluster://host:port,host:port/`): each connection goes to the primary
that serves one hash tag's slot (the home tag's, or a partition's: `tracker.store.keys`).

Every key carries a hash tag, so the keys of one tag live in one slot, and each Lua script,
`MULTI` and `WATCH` the store runs stays within one tag's. A pool is made per tag; each of its
connections asks the cluster which primary serves that slot (`CLUSTER SLOTS`) when it
connects; a `MOVED`,
`ASK`, `TRYAGAIN` or `CLUSTERDOWN` answer (the slot moved, is moving, or its primary failed
over) closes it and is retried like a lost connection, so the retry reconnects to whoever
serves the slot now. Why not redis-py's asyncio `RedisCluster`: in redis-py 5, which arq holds
us to, its pipelines have no transactions, and the store's compare-and-set writes need them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.connection import Connection, ConnectionPool, SSLConnection
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

CLUSTER_SCHEME = "redis+cluster"
TLS_CLUSTER_SCHEME = "rediss+cluster"  # the same over TLS (managed clusters often ask it)
DEFAULT_PORT = 6379

# The answers of a node that does not serve the slot (now): the records are elsewhere.
REDIRECTS = ("MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN")
# What a script answers when a key it reads has just been migrated to the slot's next owner
# (keys a script builds from a template are not checked before it runs). Redis does not undo
# what the script wrote before: the step is left as a crash at that point would leave it (a
# claim's lease runs out; an attempt recorded without its slot's release waits for the
# slot's lease), and tried again.
MIGRATING = "non local key in a cluster node"


class SlotRedirect(RedisConnectionError):  # type: ignore[misc]  # redis-py as Any
    """The node no longer serves the tag's slot (or the slot is being moved): reconnect to
    the one that does, and try again."""


@dataclass(frozen=True)
class ClusterAddress:
    """`redis+cluster://[[user]:password@]host:port[,host:port…]/` (`rediss+cluster://` over
    TLS): a few of the cluster's nodes, any of them; the rest are learned from the cluster."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False


def cluster_address(redis_url: str) -> ClusterAddress | None:
    """The cluster a `redis+cluster://` URL names; None for any other URL."""
    parts = urlsplit(redis_url)
    if parts.scheme not in (CLUSTER_SCHEME, TLS_CLUSTER_SCHEME):
        return None
    credentials, _, hosts = parts.netloc.rpartition("@")
    user, _, password = credentials.partition(":")
    nodes = []
    for host in filter(None, hosts.split(",")):
        name, _, port = host.rpartition(":") if ":" in host else (host, "", "")
        nodes.append((name, int(port) if port else DEFAULT_PORT))
    if not nodes:
        raise ValueError("a redis+cluster URL names one or more nodes: "
                         "redis+cluster://host:6379,host:6380/")  # fmt: skip
    return ClusterAddress(
        tuple(nodes),
        unquote(user) or None,
        unquote(password) or None,
        parts.scheme == TLS_CLUSTER_SCHEME,
    )


@dataclass
class Discovery:
    """Finds the primary that serves one slot, asking the nodes it knows in turn: those of the
    URL, and every node the cluster has named since (so the URL's nodes may all be gone)."""

    address: ClusterAddress
    slot: int
    timeout: float = 1.0
    known: list[tuple[str, int]] = field(default_factory=list)

    async def primary(self) -> tuple[str, int]:
        """The (host, port) of the slot's primary now; ConnectionError if no node answers."""
        failures = []
        for node in (*self.known, *self.address.nodes):
            try:
                ranges = await self._slots(node)
            except (RedisError, OSError) as exc:
                failures.append(f"{node[0]}:{node[1]}: {exc}")
                continue
            learned = [(_text(n[0]), int(n[1])) for r in ranges for n in r[2:] if n[0]]
            self.known = list(dict.fromkeys(learned))
            for start, end, owner, *_ in ranges:
                if int(start) <= self.slot <= int(end):
                    return _text(owner[0]), int(owner[1])
            failures.append(f"{node[0]}:{node[1]}: no primary serves slot {self.slot}")
        raise RedisConnectionError(
            "no node of the cluster named the records' primary: " + "; ".join(failures)
        )

    async def _slots(self, node: tuple[str, int]) -> Any:
        client = Redis(
            host=node[0],
            port=node[1],
            username=self.address.username,
            password=self.address.password,
            socket_connect_timeout=self.timeout,
            socket_timeout=self.timeout,
            ssl=self.address.tls,
        )
        async with client:
            return await client.execute_command("CLUSTER SLOTS")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class SlotOwnerConnection(Connection):  # type: ignore[misc]  # redis-py as Any
    """A connection to whichever primary serves its tag's slot at the time it connects."""

    def __init__(self, *, discovery: Discovery, **kwargs: Any) -> None:
        self.discovery = discovery
        super().__init__(**kwargs)

    async def _connect(self) -> None:
        self.host, self.port = await self.discovery.primary()
        await super()._connect()

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except ResponseError as exc:
            if not self._redirects(str(exc)):
                raise
            await self.disconnect(nowait=True)
            raise SlotRedirect(str(exc)) from exc

    def _redirects(self, answer: str) -> bool:
        """Whether `answer` sends the tag's slot elsewhere. A MOVED or ASK for another slot
        is a key outside the connection's hash tag: an error to raise, not to retry for ever."""
        if MIGRATING in answer:
            return True
        if not answer.startswith(REDIRECTS):
            return False
        words = answer.split()
        return words[0] not in ("MOVED", "ASK") or int(words[1]) == self.discovery.slot


class TLSSlotOwnerConnection(SlotOwnerConnection, SSLConnection):  # type: ignore[misc]
    """The same, over TLS (`rediss+cluster://`)."""


def on_cluster(redis: Redis) -> bool:
    """Whether `redis` is a Redis Cluster's (connected by `cluster_pool`)."""
    return issubclass(redis.connection_pool.connection_class, SlotOwnerConnection)


def cluster_pool(address: ClusterAddress, tag_key: str, **options: Any) -> ConnectionPool:
    """A pool of connections to the primary that serves `tag_key`'s slot; `options` as for a
    redis-py connection (time-outs, retry)."""
    discovery = Discovery(address, key_slot(tag_key.encode()))
    return ConnectionPool(
        connection_class=TLSSlotOwnerConnection if address.tls else SlotOwnerConnection,
        discovery=discovery,
        username=address.username,
        password=address.password,
        **options,
    )
