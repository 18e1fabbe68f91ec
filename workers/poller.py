"""The poller: each worker claims due tasks in leased batches and polls them (see
`workers.claimer` for why there is no queue job per poll)."""

from __future__ import annotations

from tracker.core.records import Task
from tracker.store import Shard
from workers.claimer import Claimer, scan_for
from workers.poll import poll_task


class Poller(Claimer[Task | None]):
    """Keeps up to `worker_concurrency` polls in flight while tasks are due."""

    name = "poll"

    async def claim(
        self, shard: Shard, now: float, limit: int, lease_until: float
    ) -> tuple[list[tuple[str, Task | None]], float | None]:
        claimed, next_due = await shard.polls.claim_due(
            now, limit, lease_until, scan=scan_for(limit)
        )
        records = await shard.tasks.get_many(claimed)
        return list(zip(claimed, records, strict=True)), next_due

    async def work(self, shard: Shard, member: str, found: Task | None) -> None:
        await poll_task(self.ctx, shard, member, found)

    async def hand_back(self, shard: Shard, member: str, now: float) -> None:
        await shard.polls.reschedule(member, now)
