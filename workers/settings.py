"""The arq worker: its delivery job, its sweeper cron and its settings, built from `Settings`.

The polls do not go through arq: each worker process runs a `workers.poller.Poller` beside it
(started by `workers.context.startup`).
"""

from __future__ import annotations

from typing import Any, cast

from arq import cron
from arq.typing import WorkerCoroutine
from arq.worker import Worker, func

from tracker import queue
from tracker.settings import Settings
from workers.context import shutdown, startup
from workers.deliver import deliver_webhook
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
        "redis_settings": queue.redis_settings(settings.redis_url),
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
