"""One partition's records (`Shard`): its clients' tasks, registrations, task indexes,
deliveries, feeds, destinations, copies, operational outbox and idempotency records, with the
due sets they sit in, on the partition's connection and under its hash tag; and the steps
that span several of them (a claimed batch's records, an attempt's record with its slot's
release, a revocation's cancellations).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from tracker.core.origins import origin_of
from tracker.core.records import Attempt, Client, Delivery, DeliveryState, Subscription, Task
from tracker.errors import NotFinal, NothingToRedeliver, RateLimited
from tracker.store import keys, recoveries, scripts
from tracker.store.batching import ScriptBatch
from tracker.store.bodies import read_outgoing
from tracker.store.buckets import Buckets
from tracker.store.clients import Clients
from tracker.store.clock import Clock
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
from tracker.store.registration import Registrations
from tracker.store.sessions import Sessions
from tracker.store.tasks import Tasks

REVOKE_BATCH = 500  # index entries a revocation reads at once
# A delivery, its subscription and its client, as `Shard.outgoing` reads them (None: gone).
Outgoing = tuple[Delivery | None, Subscription | None, Client | None]


@dataclass(frozen=True)
class Shared:
    """What every shard uses of the home's (`Store`): the fleet's clock, the clients, what
    polling learned, clients' storage settings, shared-key owners, the epoch, sessions."""

    clock: Clock
    clients: Clients
    learning: Learning
    buckets: Buckets
    owners: Owners
    identity: Identity
    sessions: Sessions


class Shard:
    """One partition's records (`Store`): the clients whose id `keys.partition_of` maps to
    `index`, with their tasks, deliveries, feeds, destinations and copies, and the due sets
    they sit in. `clients`, `clock`, `learning`, `buckets`, `owners`, `identity` and `sessions`
    are the home's, shared by every shard."""

    def __init__(
        self,
        home: Shared,
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
            redis, space,
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
