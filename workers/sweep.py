"""The sweeper, an arq cron (and once at worker start-up): deletes rotated-out webhook secrets
whose overlap has ended, for every client, even one that no delivery reads meanwhile.

Polls and deliveries need no sweeping: each is in its due set until its work is done, and a
claim that is never finished runs out (see `workers.claimer`).
"""

from __future__ import annotations

import logging

from workers.context import WorkerContext

log = logging.getLogger("tracker.sweep")


async def sweep(ctx: WorkerContext) -> int:
    """Delete expired previous secrets; returns how many were deleted."""
    purged = await ctx["store"].clients.purge_all_previous(ctx["store"].clock.now())
    if purged:
        log.info("deleted %d rotated-out webhook secrets", purged)
    return purged
