"""Redis, the one source of truth, and the only code that knows its keys and encodings.

`Store` holds what the deployment shares, under the home hash tag: `clients`, `learning`,
`buckets` (clients' storage), `identity`, `sessions`, and `owners`. Each client's records live
in one of `Store.shards` (its partition, `keys.partition_of`): `tasks` (with their
subscriptions), `polls` (the due set, and what each poll records), `deliveries` (with their
attempt logs), `feed` (each client's events), `origins` (each client's callback origins: slots
and circuit breaker), `copies`, `operations`, and `idempotency`. arq jobs are only wake-up
calls on top of these records.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from tracker.core.vault import Vault
from tracker.settings import Settings
from tracker.store import codec, keys
from tracker.store.buckets import Buckets, ClientStorage
from tracker.store.clients import Clients
from tracker.store.clock import Clock
from tracker.store.connection import connect_partitions
from tracker.store.deliveries import SubscriptionView
from tracker.store.identity import Identity
from tracker.store.learning import Learning
from tracker.store.owners import Owners
from tracker.store.registration import Registration
from tracker.store.sessions import SESSION_SECONDS, Sessions
from tracker.store.shard import Outgoing, Shard, Shared

__all__ = [
    "DEFAULT_RETENTION", "Clock", "Outgoing", "Registration", "Shard", "Store",
    "SubscriptionView", "store_for",
]  # fmt: skip


DEFAULT_RETENTION = 7 * 86400.0


class Store:
    """Typed access to every record. Ended records expire: a delivery and its attempt log
    `retention` seconds after the delivery ends; a task, its subscriptions and their indexes
    `retention + delivery_window` after the task ends, so they outlive any delivery still on
    its schedule. Live records never expire; a client's feed keeps `events_kept` events at
    most, none older than `retention`. `vault` seals and opens client secrets; without
    it, only the records that hold none can be used. `clock` tells the fleet's time (Redis's,
    once synced: `tracker.store.clock`).

    `redis` holds the home tag's keys; `partitions`, one connection per partition (each the
    same as `redis` but on a Redis Cluster, where each serves its partition's slot), or none
    for one partition."""

    def __init__(
        self,
        redis: Redis,
        *,
        partitions: Sequence[Redis] = (),
        retention: float = DEFAULT_RETENTION,
        delivery_window: float = 0.0,
        learning_refresh: float = 15.0,
        vault: Vault | None = None,
        clock: Clock | None = None,
        events_kept: int = 10_000,
        storage_deadline: float = 1800.0,
    ) -> None:
        self.redis = redis
        self.clock = clock or Clock()
        self.clients = Clients(redis, vault, self.place)
        self.buckets = Buckets(vault, self.place)
        self.learning = Learning(redis, learning_refresh)
        self.owners = Owners(self.place)
        self.identity = Identity(
            redis, self.clock, max(1, len(partitions)),
            places=lambda: [(shard.redis, shard.keys) for shard in self.shards],
        )  # fmt: skip
        self.sessions = Sessions(redis, SESSION_SECONDS)
        tags = keys.partition_tags(max(1, len(partitions)))
        shared = Shared(
            self.clock, self.clients, self.learning, self.buckets, self.owners, self.identity,
            self.sessions,
        )  # fmt: skip
        self.shards = tuple(
            Shard(
                shared,
                index,
                connection,
                keys.Keyspace(tag),
                retention=retention,
                delivery_window=delivery_window,
                events_kept=events_kept,
                storage_deadline=storage_deadline,
            )
            for index, (connection, tag) in enumerate(zip(partitions or [redis], tags, strict=True))
        )

    def shard(self, client_id: str) -> Shard:
        """The partition that holds the client's records."""
        return self.shards[keys.partition_of(client_id, len(self.shards))]

    def place(self, name: str) -> tuple[Redis, keys.Keyspace]:
        """The connection and keys of the partition `name` (a client id, or a tracking id
        for its owner's claim) maps to."""
        shard = self.shard(name)
        return shard.redis, shard.keys

    async def registering(self, client_id: str) -> tuple[list[str], ClientStorage]:
        """What a registration reads of the client's own settings, in one round trip: the
        fingerprints of its own QuickRouter keys (sorted), and its object storage."""
        where, space = self.place(client_id)
        async with where.pipeline(transaction=False) as pipe:
            pipe.hkeys(space.client_upstream_keys(client_id))
            pipe.hgetall(space.client_storage(client_id))
            names, storage = await pipe.execute()
        return sorted(n.decode() for n in names), self.buckets.parse(codec.text(storage))

    async def aclose(self) -> None:
        """Close the partitions' own connections (on a cluster); `redis`, the home's, stays
        with whoever opened it."""
        opened = {id(s.redis): s.redis for s in self.shards if s.redis is not self.redis}
        for connection in opened.values():
            await connection.aclose()

    async def reseal(self) -> int:
        """Seal every stored secret with the vault's first key (`Clients.reseal`, and the
        headers kept on every partition's subscriptions); how many values were sealed again."""
        resealed = await self.clients.reseal()
        for shard in self.shards:
            resealed += await shard.tasks.reseal_headers(self.clients.vault)
        return resealed

    async def storage_totals(self) -> dict[str, int]:
        """The objects stored and their bytes, in all and per client (`Copies.totals`, over
        every partition)."""
        found: dict[str, int] = {}
        for shard in self.shards:
            for name, value in (await shard.copies.totals()).items():
                found[name] = found.get(name, 0) + value
        return found

    async def opened_origins(self, now: float) -> list[tuple[str, str, float]]:
        """Every client's origins whose circuit is open now (`Origins.opened`)."""
        return [found for shard in self.shards for found in await shard.origins.opened(now)]

    async def activity(self, client_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """Each client's tasks tracking now and webhook attempts in flight (the operator's
        page), in one round trip per partition."""
        by_shard: dict[Shard, list[str]] = {}
        for client_id in client_ids:
            by_shard.setdefault(self.shard(client_id), []).append(client_id)
        found: dict[str, tuple[int, int]] = {}
        for shard, mine in by_shard.items():
            found.update(await shard.activity(mine))
        return found


def store_for(
    settings: Settings,
    redis: Redis,
    *,
    patient: bool,
    vault: Vault | None = None,
    clock: Clock | None = None,
) -> Store:
    """The store a process uses, on `redis` (the home's connection) and one connection per
    partition (`connection.connect_partitions`: patient as a worker's, or quick as the API's),
    with the settings' retention, feed and storage figures. `Store.aclose` closes what it
    opened."""
    partitions = connect_partitions(
        str(settings.redis_url), redis, settings.partitions, patient=patient
    )
    return Store(
        redis,
        partitions=partitions,
        retention=settings.retention,
        delivery_window=settings.delivery_window,
        events_kept=settings.events_per_client,
        learning_refresh=settings.learning_refresh,
        vault=vault,
        clock=clock or Clock(settings.clock_skew),
        storage_deadline=settings.storage_deadline,
    )
