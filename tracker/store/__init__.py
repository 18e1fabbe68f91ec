"""Redis, the one source of truth, and the only code that knows its keys and encodings.

`Store` gathers one object per aggregate: `tasks` (with their subscriptions), `polls` (the
due set, and what each poll records), `deliveries` (with their attempt logs), `origins` (each
callback origin's slots and circuit breaker), `clients`, and `learning`. arq jobs are only
wake-up calls on top of these records.
"""

from __future__ import annotations

from redis.asyncio import Redis

from tracker.core.vault import Vault
from tracker.store import keys
from tracker.store.clients import Clients
from tracker.store.clock import Clock
from tracker.store.deliveries import Deliveries, SubscriptionView
from tracker.store.learning import Learning
from tracker.store.origins import Origins
from tracker.store.polls import Polls
from tracker.store.tasks import Registration, Tasks

__all__ = ["DEFAULT_RETENTION", "Clock", "Registration", "Store", "SubscriptionView"]

DEFAULT_RETENTION = 7 * 86400.0


class Store:
    """Typed access to every record. Ended records expire: a delivery and its attempt log
    `retention` seconds after the delivery ends; a task, its subscriptions and their indexes
    `retention + delivery_window` after the task ends, so they outlive any delivery still on
    its schedule. Live records never expire. `vault` seals and opens client secrets; without
    it, only the records that hold none can be used. `clock` tells the fleet's time (Redis's,
    once synced: `tracker.store.clock`)."""

    def __init__(
        self,
        redis: Redis,
        *,
        retention: float = DEFAULT_RETENTION,
        delivery_window: float = 0.0,
        learning_refresh: float = 15.0,
        vault: Vault | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.redis = redis
        self.clock = clock or Clock()
        delivery_retention = max(1, round(retention))
        task_retention = max(1, round(retention + delivery_window))
        self.clients = Clients(redis, vault)
        self.tasks = Tasks(redis, task_retention=task_retention)
        self.polls = Polls(redis, self.tasks)
        self.deliveries = Deliveries(
            redis, retention=delivery_retention, task_retention=task_retention
        )
        self.learning = Learning(redis, learning_refresh)
        self.origins = Origins(redis)

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
            await pinned.set(keys.REPLICATION_MARK, "1", px=60_000)
            acked = await pinned.execute_command("WAIT", replicas, max(1, round(within * 1000)))
            found = await pinned.exists(written)
        return int(acked) >= replicas and bool(found)
