"""The sweeper, an arq cron (and once at worker start-up): the bounded clean-up that no
record's own expiry does.

- Rotated-out webhook secrets whose overlap has ended are deleted, for every client, even one
  that no delivery reads meanwhile.
- Each client's task index (for listing) loses the tasks whose records expired: a sorted set
  cannot expire member by member. A pass looks at INDEX_PER_PASS entries of each client at
  most, going on from where the last pass stopped.
- Operational events noted but not announced (their worker died between the two steps) are
  announced (`workers.announce`).
- The key fingerprints a client registered with are forgotten once none of their tasks can be
  left, and open-origin entries whose time has passed are dropped.

Polls and deliveries need no sweeping: each is in its due set until its work is done, and a
claim that is never finished runs out (see `workers.claimer`).
"""

from __future__ import annotations

import logging

from workers.announce import announce_waiting
from workers.context import WorkerContext

log = logging.getLogger("tracker.sweep")

INDEX_PER_PASS = 2000  # index entries one pass looks at per client, at most
INDEX_CHUNK = 500  # entries one script call looks at (a short call: Redis serves others between)
ANNOUNCE_AFTER = 10.0  # seconds a noted operational event waits for its worker to announce it


async def sweep(ctx: WorkerContext) -> int:
    """One pass; returns how many records it deleted."""
    home = ctx["store"]
    now = home.clock.now()
    purged = await home.clients.purge_all_previous(now)
    if purged:
        log.info("deleted %d rotated-out webhook secrets", purged)
    announced = 0
    for shard in home.shards:
        await shard.origins.forget_closed(now)
        # What a crash left between an attempt's record and its announcement (a worker
        # announces its own at once; ANNOUNCE_AFTER leaves it that time).
        announced += await announce_waiting(shard, now - ANNOUNCE_AFTER)
    if announced:
        log.info("announced %d operational events left waiting", announced)
    marks = ctx.setdefault("sweep_marks", {})
    dropped = 0
    for client_id in await home.clients.ids():
        store = home.shard(client_id)
        # A task's records expire `task_retention` after it ends, so no task registered since
        # `cutoff` can have gone yet; one polled up to its deadline can outlive that by as much.
        cutoff = now - store.tasks.task_retention
        after = marks.pop(client_id, float("-inf"))
        for _ in range(INDEX_PER_PASS // INDEX_CHUNK):
            gone, last = await store.task_index.forget_expired(
                client_id, after, cutoff, INDEX_CHUNK
            )
            dropped += gone
            if last is None:
                break
            after = last
        else:  # looked at its share for this pass: the next one goes on from here
            marks[client_id] = after
        await store.task_index.forget_old_scopes(client_id, cutoff - ctx["settings"].poll_deadline)
    if dropped:
        log.info("dropped %d expired tasks from the clients' task lists", dropped)
    return purged + dropped
