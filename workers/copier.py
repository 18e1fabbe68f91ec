"""The copier: each worker claims due copies in leased batches, like the poller and the
dispatcher (`workers.claimer`), with fewer slots (a copy holds memory and bandwidth for
minutes) and a lease as long as a copy may take. A worker killed mid-copy leaves its lease to
run out; the next worker ends the upload it left open and copies again to the same key.
"""

from __future__ import annotations

from tracker.store import Shard
from tracker.store.copies import Copy
from workers.claimer import Claimer, scan_for
from workers.context import WorkerContext
from workers.copy import copy_videos


class Copier(Claimer[Copy | None]):
    """Keeps up to TRACKER_STORAGE_COPIES_PER_WORKER copies in flight while some are due."""

    name = "copy"

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        settings = ctx["settings"]
        self.slots = settings.storage_copies_per_worker
        # A try stops itself at its own time limit (`copy_output`); this is the backstop.
        self.time_limit = settings.storage_copy_timeout + 5.0
        self.lease = self.time_limit + 5.0

    async def claim(
        self, store: Shard, now: float, limit: int, lease_until: float
    ) -> tuple[list[tuple[str, Copy | None]], float | None]:
        claimed, next_due = await store.copies.claim_due(
            now, limit, lease_until,
            per_client=self.ctx["settings"].storage_per_client, scan=scan_for(limit),
        )  # fmt: skip
        records = await store.copies.get_many(claimed)
        return list(zip(claimed, records, strict=True)), next_due

    async def work(self, shard: Shard, member: str, found: Copy | None) -> None:
        await copy_videos(self.ctx, shard, member, found)

    async def hand_back(self, store: Shard, member: str, now: float) -> None:
        found = await store.copies.get(member)
        await store.copies.reschedule(member, now)
        if found is not None:
            await store.copies.vacate(member, found.client_id)
