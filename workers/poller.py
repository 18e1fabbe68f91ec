"""The poller: each worker claims due tasks in batches and polls them, no queue job per poll.

Why not one arq job per poll: arq's own bookkeeping is about six Redis round trips a job, and
arq runs at most ~2,900 no-op jobs a second here, a third of what this machine can make of the
same GETs (see the README's Performance section). Here a batch of due tasks is claimed with one
Lua call that leases them (pushes their due time forward by the job time-out plus 5 s), so:

- no two workers poll a task at once (the lease), and a task has one poller however many
  subscriptions it has;
- a worker that dies mid-poll loses nothing: its leases run out and the tasks come due again
  for any worker (the job time-out plus 5 s, 35 s by default);
- cancelling a task removes it from the due set, so it is never claimed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from tracker.core.records import Task
from workers.context import WorkerContext
from workers.poll import poll_task

log = logging.getLogger("tracker.poller")


class Poller:
    """Keeps up to `worker_concurrency` polls in flight while there are due tasks."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        # A poll is cut off at the job time-out; its lease lasts a little longer, so nobody
        # claims a task while its poll may still be running.
        self.lease = ctx["settings"].job_timeout + 5.0
        self.inflight: dict[str, asyncio.Task[None]] = {}
        self.claiming = True
        self.wake = asyncio.Event()
        self.loop_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.loop_task = asyncio.create_task(self.run())

    def stop_claiming(self) -> None:
        """Take no new tasks (the start of a graceful shutdown); polls in flight go on."""
        self.claiming = False
        self.wake.set()

    async def run(self) -> None:
        settings, store = self.ctx["settings"], self.ctx["store"]
        limit = settings.worker_concurrency
        while self.claiming:
            free = limit - len(self.inflight)
            claimed: list[str] = []
            records: list[Task | None] = []
            wait = settings.queue_poll_interval
            if free > 0:
                now = time.time()
                try:
                    claimed, next_due = await store.polls.claim_due(now, free, now + self.lease)
                    records = await store.tasks.get_many(claimed)
                except Exception:  # the loop must outlive any one failure; leases run out
                    log.exception("claiming due tasks failed")
                    await asyncio.sleep(1.0)
                    continue
                if next_due is not None:
                    wait = min(wait, max(0.0, next_due - time.time()))
            for task_id, record in zip(claimed, records, strict=True):
                task = asyncio.create_task(self.poll(task_id, record))
                self.inflight[task_id] = task
                task.add_done_callback(self._on_done(task_id))
            if len(claimed) < free or free <= 0:
                # Nothing more is due (or no room): wait for a poll to end (it may schedule
                # one sooner), for the next due time, or for the next tick.
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), wait)

    def _on_done(self, task_id: str) -> Callable[[asyncio.Task[None]], None]:
        def done(_: asyncio.Task[None]) -> None:
            self.inflight.pop(task_id, None)
            self.wake.set()

        return done

    async def poll(self, task_id: str, record: Task | None) -> None:
        try:
            timeout = self.ctx["settings"].job_timeout
            await asyncio.wait_for(poll_task(self.ctx, task_id, record), timeout)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease runs out and the task comes due again: a failed poll is retried.
            log.exception("poll failed", extra={"task_id": task_id})

    async def stop(self, grace: float) -> None:
        """Stop claiming, let polls in flight finish for `grace` s, hand the rest back."""
        self.stop_claiming()
        if self.loop_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.loop_task
        running = list(self.inflight.items())
        if running:
            await asyncio.wait([t for _, t in running], timeout=grace)
        now = time.time()
        for task_id, task in running:
            if not task.done():
                task.cancel()
                with contextlib.suppress(Exception):
                    await self.ctx["store"].polls.reschedule(task_id, now)
