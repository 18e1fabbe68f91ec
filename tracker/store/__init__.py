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

import dataclasses
from collections.abc import Sequence

from redis.asyncio import Redis

from tracker.core.origins import origin_of
from tracker.core.records import Attempt, Client, Delivery, DeliveryState, Subscription, Task
from tracker.core.vault import Vault
from tracker.errors import NotFinal, NothingToRedeliver, RateLimited
from tracker.settings import Settings
from tracker.store import codec, keys, recoveries, scripts
from tracker.store.batching import ScriptBatch
from tracker.store.bodies import read_outgoing
from tracker.store.buckets import Buckets, ClientStorage
from tracker.store.clients import Clients
from tracker.store.clock import Clock
from tracker.store.connection import connect_partitions
from tracker.store.copies import Copies
from tracker.store.deliveries import Deliveries, SubscriptionView
from tracker.store.feed import Feed, FeedPolicy
from tracker.store.idempotency import Idempotency
from tracker.store.identity import Identity
from tracker.store.index import TaskIndex
from tracker.store.learning import Learning
from tracker.store.operations import Operations
from tracker.store.origins import Breaker, Origins, OriginState, release_call
from tracker.store.owners import Owners
from tracker.store.polls import Polls
from tracker.store.ratelimit import admit_redelivery
from tracker.store.registration import Registration, Registrations
from tracker.store.sessions import SESSION_SECONDS, Sessions
from tracker.store.tasks import Tasks

__all__ = [
    "DEFAULT_RETENTION", "Clock", "Outgoing", "Registration", "Shard", "Store",
    "SubscriptionView", "store_for",
]  # fmt: skip

# A delivery, its subscription and its client, as `Store.outgoing` reads them (None: gone).
Outgoing = tuple[Delivery | None, Subscription | None, Client | None]

DEFAULT_RETENTION = 7 * 86400.0
REVOKE_BATCH = 500  # index entries a revocation reads at once


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
        self.identity = Identity(redis, self.clock, max(1, len(partitions)))
        self.sessions = Sessions(redis, SESSION_SECONDS)
        tags = keys.partition_tags(max(1, len(partitions)))
        self.shards = tuple(
            Shard(
                self,
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
        found: dict[str, tuple[int, int]] = {}
        for shard in self.shards:
            mine = [c for c in client_ids if self.shard(c) is shard]
            if mine:
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


class Shard:
    """One partition's records (`Store`): the clients whose id `keys.partition_of` maps to
    `index`, with their tasks, deliveries, feeds, destinations and copies, and the due sets
    they sit in. `clients`, `clock`, `learning`, `buckets`, `owners`, `identity` and `sessions`
    are the home's, shared by every shard."""

    def __init__(
        self,
        home: Store,
        index: int,
        redis: Redis,
        space: keys.Keyspace,
        *,
        retention: float,
        delivery_window: float,
        events_kept: int,
        storage_deadline: float,
    ) -> None:
        self.index = index
        self.redis = redis
        self.keys = space
        self.clock = home.clock
        self.clients = home.clients
        self.learning = home.learning
        self.buckets = home.buckets
        self.identity = home.identity
        self.sessions = home.sessions
        delivery_retention = max(1, round(retention))
        task_retention = max(1, round(retention + delivery_window))
        self.tasks = Tasks(
            redis, space, home.clients,
            task_retention=task_retention,
            feed=FeedPolicy(events_kept, retention),
            storage_deadline=storage_deadline,
        )  # fmt: skip
        self.registrations = Registrations(redis, space, self.tasks, home.owners)
        self.task_index = TaskIndex(redis, space, self.tasks)
        self.feed = Feed(redis, space)
        self.copies = Copies(redis, space, self.tasks, self.tasks.feed)
        self.polls = Polls(redis, space, self.tasks)
        self.deliveries = Deliveries(
            redis, space, retention=delivery_retention, task_retention=task_retention
        )
        self.origins = Origins(redis, space)
        self.operations = Operations(redis, space, self.tasks.feed, task_retention)
        self.idempotency = Idempotency(redis, space)
        # Many attempts end at once in a busy worker: their records share round trips.
        self._conclude = ScriptBatch(redis, scripts.CONCLUDE_ATTEMPT)
        self._read_outgoing = redis.register_script(scripts.READ_OUTGOING)

    async def activity(self, client_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """`Store.activity` for clients of this partition."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for client_id in client_ids:
                pipe.scard(self.keys.client_live_tasks(client_id))
                pipe.zcard(self.keys.client_sending(client_id))
            found = await pipe.execute()
        return {
            client_id: (int(found[2 * n]), int(found[2 * n + 1]))
            for n, client_id in enumerate(client_ids)
        }

    async def replicated(self, replicas: int, within: float, written: str) -> bool:
        """Whether the record at key `written`, and every write before it, reached `replicas`
        replicas within `within` seconds: what makes a write survive a failover.

        Redis's WAIT counts one connection's writes, and a pool spreads ours over several
        (during a failover, over two primaries); but a primary replicates one ordered stream.
        So a mark is written and waited for on one connection, and the record is looked up on
        that same node: found there, it is as safe as the mark.
        """
        if replicas <= 0:
            return True
        async with self.redis.client() as pinned:
            await pinned.set(self.keys.REPLICATION_MARK, "1", px=60_000)
            acked = await pinned.execute_command("WAIT", replicas, max(1, round(within * 1000)))
            found = await pinned.exists(written)
        return int(acked) >= replicas and bool(found)

    async def outgoing(self, delivery_ids: Sequence[str], now: float) -> dict[str, Outgoing]:
        """Each delivery with its subscription and that subscription's client, and with its
        body (a final event's is built again from its task), in two round trips however many
        there are (a dispatcher's claimed batch). `now` as in `Clients.get`."""
        deliveries, sources = await read_outgoing(self._read_outgoing, self.keys, delivery_ids)
        for delivery_id, event in deliveries.items():
            if event is not None and event.source and not event.body:
                # An ended final event's body (redelivered), built again from its task (none if
                # the task is gone).
                body = sources.body(
                    event.event_type, event.made_at, event.subscription_id, event.source
                )
                deliveries[delivery_id] = dataclasses.replace(event, body=body or b"")
        subscriptions = sources.subscriptions
        clients = await self.clients.get_many(
            (s.client_id for s in subscriptions.values() if s), now
        )
        found = {}
        for delivery_id, delivery in deliveries.items():
            subscription = subscriptions.get(delivery.subscription_id) if delivery else None
            client = clients.get(subscription.client_id) if subscription else None
            found[delivery_id] = (delivery, subscription, client)
        return found

    async def task_view(
        self, client_id: str, task: Task, mine: Sequence[Subscription], now: float
    ) -> tuple[list[SubscriptionView], dict[str, OriginState]]:
        """What a client is shown of its subscriptions `mine` to `task` (the API's task and the
        dashboard's task page): each with its deliveries and their attempts, and the health of
        each callback origin, by the client's own breakers."""
        shown = await self.deliveries.views(mine)
        # The subscriptions' states read again, after their deliveries: an attempt that ends a
        # delivery and disables its subscription (a 410) writes both at once, so this order
        # never shows the delivery ended and the subscription not.
        fresh = {s.id: s for s in await self.tasks.subscriptions_of(task)}
        shown = [
            dataclasses.replace(v, subscription=fresh.get(v.subscription.id, v.subscription))
            for v in shown
        ]
        origins = [origin_of(s.callback_url) for s in mine if s.callback_url]
        return shown, await self.origins.states(client_id, origins, now)

    async def revoke_client(self, client_id: str, now: float) -> bool:
        """Revoke a client (`Clients.revoke`: its key refused, its credentials deleted), then
        cancel each of its subscriptions, its operational one too: its tasks that nobody else
        follows are no longer polled, and its pending deliveries are skipped at their next
        turn, unsent. Its tasks and deliveries stay, to expire with the retention. False if
        there is no such client.

        Revoked first: a registration racing the revocation is refused from then on, and one
        that got in before is in the index this walks."""
        if not await self.clients.revoke(client_id):
            return False
        index, start = self.keys.client_tasks(client_id), 0
        while batch := await self.redis.zrange(index, start, start + REVOKE_BATCH - 1):
            for tracking_id in batch:
                await self.tasks.cancel(client_id, tracking_id.decode(), now)
            start += REVOKE_BATCH
        await self.operations.unsubscribe(client_id)
        return True

    async def enable_destination(
        self, client_id: str, origin: str, now: float, *, since: float, limit: int, scan: int
    ) -> tuple[int, bool]:
        """A client's destination takes attempts again (its owner says it is back): its
        circuit closed (and enabled, if it was disabled), and its deliveries waiting since
        `since` due at once (`limit` at most, looking at `scan` of its tasks); how many, and
        whether there may be more."""
        await self.origins.close(client_id, origin)
        waiting, more = await recoveries.failed_to(
            self.redis, self.keys, client_id, origin, since, now,
            limit=limit, scan=scan, wanted=recoveries.pending,
        )  # fmt: skip
        await self.deliveries.due_now([w.delivery_id for w in waiting], now)
        return len(waiting), more

    async def redeliver_final(
        self,
        client_id: str,
        task: Task,
        subscriptions: Sequence[Subscription],
        now: float,
        per_minute: int,
    ) -> list[Delivery]:
        """A client's redeliver call (the API's and the dashboard's): the final event again to
        `subscriptions` (`Deliveries.redeliver`). NotFinal for a task still running,
        NothingToRedeliver when none of them has a callback, RateLimited past `per_minute`
        calls in a minute (a refused call counts toward none)."""
        if not task.state.is_final:
            raise NotFinal(f"task {task.task_id!r} is {task.state}; it has no final event yet")
        if not any(s.callback_url for s in subscriptions):
            raise NothingToRedeliver(
                "no subscription of yours to this task has a callback_url: its events are in "
                "your event feed (GET /v1/events), and there is no webhook to send again"
            )
        if not await admit_redelivery(self.redis, self.keys, client_id, now, per_minute):
            raise RateLimited(
                f"more than {per_minute} redeliver calls in one minute",
                retry_after=60 - int(now % 60),
            )
        return await self.deliveries.redeliver(task, subscriptions, now)

    async def conclude_attempt(
        self,
        delivery: Delivery,
        attempt: Attempt,
        *,
        state: DeliveryState,
        next_attempt_at: float | None,
        disable_subscription: bool,
        client_id: str,
        origin: str,
        failed: bool,
        now: float,
        breaker: Breaker,
    ) -> tuple[bool, int]:
        """`deliveries.record_attempt` and `origins.release` in one step, one round trip:
        whether the attempt was recorded, and whether it opened its origin's circuit (1) or
        disabled it (2: `scripts.RELEASE_SLOT`)."""
        record_keys, record_args = self.deliveries.record_call(
            delivery, attempt, state, next_attempt_at, disable_subscription
        )
        failure = str(attempt.status_code or attempt.error or "") if failed else ""
        release_keys, release_args = release_call(
            self.keys,
            client_id,
            origin,
            delivery.id,
            failed,
            now,
            breaker,
            attempt.latency_ms,
            failure,
        )
        recorded, opened = await self._conclude(
            keys=record_keys + release_keys, args=record_args + release_args
        )
        return bool(recorded), int(opened)
