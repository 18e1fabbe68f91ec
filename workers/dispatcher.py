"""The dispatcher: each worker claims due deliveries in leased batches and attempts them (see
`workers.claimer`). A delivery's lease makes its worker its one sender until the attempt is
recorded; a worker that dies mid-attempt leaves it to come due again."""

from __future__ import annotations

from workers.claimer import Claimer
from workers.deliver import attempt_delivery


class Dispatcher(Claimer[None]):
    """Keeps up to `worker_concurrency` delivery attempts in flight while deliveries are due."""

    name = "delivery"

    async def claim(
        self, now: float, limit: int, lease_until: float
    ) -> tuple[list[tuple[str, None]], float | None]:
        claimed, next_due = await self.ctx["store"].deliveries.claim_due(now, limit, lease_until)
        return [(delivery_id, None) for delivery_id in claimed], next_due

    async def work(self, member: str, found: None) -> None:
        await attempt_delivery(self.ctx, member)

    async def hand_back(self, member: str, now: float) -> None:
        await self.ctx["store"].deliveries.postpone(member, now)
