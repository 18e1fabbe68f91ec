"""The dispatcher: each worker claims due deliveries in leased batches and attempts them (see
`workers.claimer`). A delivery's lease makes its worker its one sender until the attempt is
recorded; a worker that dies mid-attempt leaves it to come due again.

The claim takes a slot of each delivery's origin as it leases the delivery, and passes over
those whose origin is open or has every slot in flight (putting them off in Redis): a worker
only ever holds deliveries that can go now, and a dead receiver's backlog costs it nothing.
"""

from __future__ import annotations

from redis.exceptions import RedisError

from tracker.store import Outgoing, Shard
from workers.claimer import Claimer, scan_for
from workers.deliver import attempt_delivery


class Dispatcher(Claimer[tuple[str, Outgoing | None]]):
    """Keeps up to `worker_concurrency` delivery attempts in flight while deliveries are due."""

    name = "delivery"

    async def claim(
        self, store: Shard, now: float, limit: int, lease_until: float
    ) -> tuple[list[tuple[str, tuple[str, Outgoing | None]]], float | None]:
        """Claim due deliveries, and read the batch's records together (three round trips
        for the whole batch rather than three for each delivery)."""
        settings = self.ctx["settings"]
        claimed, next_due = await store.deliveries.claim_due(
            now,
            limit,
            lease_until,
            slots=settings.delivery_per_origin,
            scan=scan_for(limit),
            window=settings.delivery_window,
            per_client=settings.deliveries_per_client,
        )
        if not claimed:
            return [], next_due
        try:
            parts = await store.outgoing([member for member, _ in claimed], now)
        except RedisError:  # claimed and leased: each attempt reads its own records instead
            parts = {}
        return [(member, (kind, parts.get(member))) for member, kind in claimed], next_due

    async def work(self, shard: Shard, member: str, found: tuple[str, Outgoing | None]) -> None:
        kind, parts = found
        await attempt_delivery(self.ctx, shard, member, claimed=kind, parts=parts)

    async def hand_back(self, store: Shard, member: str, now: float) -> None:
        await store.deliveries.postpone(member, now)
        await store.origins.vacate(member, probe=False)
