"""Work taken from a due set in leased batches: the loop shared by the poller (due tasks) and
the dispatcher (due deliveries).

Why not one arq job per poll or delivery: arq's bookkeeping is about six Redis round trips a
job, and its worker takes at most `max_jobs` jobs per `poll_delay`, so one worker sent 165
webhooks a second at the default settings (see docs/performance.md). Here a
batch of due members is claimed with one Lua call that leases them (pushes their due time
past the job time-out), so:

- nobody else works on a member meanwhile (the lease), and the due set stays the one truth:
  a wake-up cannot be lost, since a member leaves the set only when its work is done;
- a worker that dies mid-work loses nothing: its leases run out and the members come due
  again for any worker (the job time-out plus 5 s, 35 s by default);
- work that ends (a task finished, a delivery delivered) removes its member, so it is never
  claimed again; work put off moves its member's due time.

With several partitions (TRACKER_PARTITIONS) each has its own due sets: a claim goes over
them in turn, starting one further at each claim, so a busy partition never starves another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from tracker.store import Shard
from workers.context import WorkerContext

log = logging.getLogger("tracker.claimer")

# How many due entries one claim may look at per free slot, passing over those that must wait
# (a busy origin's deliveries, a backlog of one client's polls).
SCAN_PER_SLOT = 4
# How long a loop waits before it looks again at a Redis that lost the tracker's epoch.
IDENTITY_WAIT = 1.0


def scan_for(free: int) -> int:
    """How many due entries a claim for `free` slots looks at."""
    return max(100, free * SCAN_PER_SLOT)


T = TypeVar("T")


class Claimer(Generic[T]):
    """Keeps up to `worker_concurrency` members of the partitions' due sets in work while
    some are due.

    Subclasses say how to claim from one partition (`claim`: ids and what to work with, and
    the next due time), how to work on one (`work`), and how to hand an unfinished one back
    (`hand_back`).
    """

    name = "work"

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        # Work in flight at once, how long one piece may run, and how long its claim holds.
        self.slots = ctx["settings"].worker_concurrency
        self.time_limit = ctx["settings"].job_timeout
        self.lease = ctx["settings"].lease
        self.inflight: dict[tuple[int, str], asyncio.Task[None]] = {}  # (partition, member)
        self.turn = 0  # the partition the next claim starts with
        self.claiming = True
        self.woken = asyncio.Event()
        self.loop_task: asyncio.Task[None] | None = None

    async def claim(
        self, shard: Shard, now: float, limit: int, lease_until: float
    ) -> tuple[list[tuple[str, T]], float | None]:
        raise NotImplementedError

    async def work(self, shard: Shard, member: str, found: T) -> None:
        raise NotImplementedError

    async def hand_back(self, shard: Shard, member: str, now: float) -> None:
        raise NotImplementedError

    async def claim_in_turn(
        self, now: float, free: int
    ) -> tuple[list[tuple[Shard, str, T]], float | None]:
        """Claim up to `free` members from the partitions in turn; the earliest next due
        time of those looked at."""
        shards = self.ctx["store"].shards
        start, self.turn = self.turn, (self.turn + 1) % len(shards)
        claimed: list[tuple[Shard, str, T]] = []
        next_due: float | None = None
        for step in range(len(shards)):
            if len(claimed) >= free:
                break
            shard = shards[(start + step) % len(shards)]
            found, due = await self.claim(shard, now, free - len(claimed), now + self.lease)
            claimed += [(shard, member, work) for member, work in found]
            if due is not None:
                next_due = due if next_due is None else min(next_due, due)
        return claimed, next_due

    def start(self) -> None:
        self.loop_task = asyncio.create_task(self.run())

    def wake(self) -> None:
        """Look for due members now (new work was just made in this process)."""
        self.woken.set()

    def stop_claiming(self) -> None:
        """Take no new work (the start of a graceful shutdown); work in flight goes on."""
        self.claiming = False
        self.woken.set()

    async def run(self) -> None:
        settings = self.ctx["settings"]
        limit = self.slots
        while self.claiming:
            # Cleared before looking, never after: work that ends while this iteration claims
            # sets it again, and the wait below returns at once instead of missing it.
            self.woken.clear()
            free = limit - len(self.inflight)
            claimed: list[tuple[Shard, str, T]] = []
            wait = settings.queue_poll_interval
            if free > 0:
                now = self.ctx["store"].clock.now()
                try:
                    if not await self.ctx["store"].identity.verify():
                        # Redis lost its data: work on what it holds now would be work on
                        # nothing, or on records that no longer agree (`store.identity`).
                        await asyncio.sleep(IDENTITY_WAIT)
                        continue
                    claimed, next_due = await self.claim_in_turn(now, free)
                except Exception:  # the loop must outlive any one failure; leases run out
                    log.exception("claiming due %s failed", self.name)
                    await asyncio.sleep(1.0)
                    continue
                if next_due is not None:
                    wait = min(wait, max(0.0, next_due - self.ctx["store"].clock.now()))
            for shard, member, found in claimed:
                task = asyncio.create_task(self.guarded(shard, member, found))
                self.inflight[shard.index, member] = task
                task.add_done_callback(self._on_done((shard.index, member)))
            if len(claimed) < free or free <= 0:
                # Nothing more is due (or no room): wait for work to end (it may make some due
                # sooner), for a wake-up, for the next due time, or for the next tick.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.woken.wait(), wait)

    def _on_done(self, held: tuple[int, str]) -> Callable[[asyncio.Task[None]], None]:
        def done(_: asyncio.Task[None]) -> None:
            self.inflight.pop(held, None)
            self.woken.set()

        return done

    async def guarded(self, shard: Shard, member: str, found: T) -> None:
        try:
            async with asyncio.timeout(self.time_limit):
                await self.work(shard, member, found)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease runs out and the member comes due again: failed work is retried.
            log.exception("%s failed", self.name, extra={"task_id": member})

    async def stop(self, grace: float) -> None:
        """Stop claiming, let work in flight finish for `grace` s, hand the rest back."""
        self.stop_claiming()
        if self.loop_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.loop_task
        running = list(self.inflight.items())
        if running:
            await asyncio.wait([t for _, t in running], timeout=grace)
        now = self.ctx["store"].clock.now()
        shards = self.ctx["store"].shards
        for (index, member), task in running:
            if not task.done():
                task.cancel()
                with contextlib.suppress(Exception):
                    await self.hand_back(shards[index], member, now)
