"""The arq worker, built in one place: its delivery job, its sweeper cron, its start-up and
shutdown. Polls do not go through arq: start-up runs a `workers.poller.Poller` beside it.
"""

from __future__ import annotations

from typing import Any, cast

import prometheus_client
from arq import cron
from arq.typing import WorkerCoroutine
from arq.worker import Worker, func

from tracker.net.client import http_client
from tracker.settings import Settings
from tracker.store import queue
from tracker.store.connection import redis_settings
from workers.context import WorkerContext, build_context
from workers.deliver import deliver_webhook
from workers.poller import Poller
from workers.sweep import sweep_overdue

# A chain of wake-ups ends by returning, never by running out of tries.
UNLIMITED_TRIES = 10**9


def create_worker(settings: Settings, **overrides: Any) -> Worker:
    """An arq worker for `settings`; `overrides` go to `arq.worker.Worker` (tests use `burst`)."""
    if not settings.redis_url:
        raise ValueError("create_worker needs settings.redis_url")
    timeout = settings.job_timeout
    options: dict[str, Any] = {
        "functions": [
            func(
                cast(WorkerCoroutine, deliver_webhook),
                name=queue.DELIVER_WEBHOOK,
                max_tries=UNLIMITED_TRIES,
                timeout=timeout,
            ),
        ],
        "cron_jobs": [
            cron(
                cast(WorkerCoroutine, sweep_overdue),
                name=queue.SWEEP_OVERDUE,
                second=set(range(0, 60, settings.sweep_interval)),
                timeout=timeout,
            )
        ],
        "redis_settings": redis_settings(settings.redis_url),
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {"settings": settings},
        "max_jobs": settings.worker_concurrency,
        "poll_delay": settings.queue_poll_interval,
        "keep_result": 0,
        "job_timeout": timeout,
        "job_completion_wait": int(settings.shutdown_grace),
        "health_check_interval": 60,
    }
    options.update(overrides)
    return Worker(**options)


async def startup(ctx: dict[str, Any]) -> None:
    """arq's on_startup: open the shared clients, sweep what a crash left overdue, then start
    the poller. arq's `ctx` dict becomes the typed `WorkerContext`."""
    settings = cast(Settings, ctx["settings"])
    ctx.update(build_context(settings, ctx["redis"], http_client(settings)))
    if settings.metrics_port:
        prometheus_client.start_http_server(settings.metrics_port, settings.metrics_host)
    typed = cast(WorkerContext, ctx)
    poller = Poller(typed)
    ctx["poller"] = poller
    await sweep_overdue(typed)
    poller.start()


async def shutdown(ctx: dict[str, Any]) -> None:
    """arq's on_shutdown: let polls in flight finish (or hand them back), close the clients."""
    poller = ctx.get("poller")
    if poller is not None:
        await poller.stop(cast(Settings, ctx["settings"]).shutdown_grace)
    http = ctx.get("http")
    if http is not None:
        await http.aclose()
