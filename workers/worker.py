"""The worker, built in one place: arq runs its sweeper cron and gives the process its frame
(start-up, shutdown, health check, Redis reconnection); start-up runs the poller (due tasks),
the dispatcher (due deliveries) and the copier (due copies of videos) beside it, each with its
own slots.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any, cast

import prometheus_client
from arq import cron
from arq.typing import WorkerCoroutine
from arq.worker import Worker

from tracker import tracing
from tracker.errors import ConfigurationError
from tracker.net.callbacks import Callbacks
from tracker.net.client import http_client
from tracker.settings import Settings
from tracker.store import clock
from tracker.store.cluster import cluster_address
from tracker.store.connection import connect_records, pack_with_hiredis, redis_settings
from workers.context import WorkerContext, build_context
from workers.copier import Copier
from workers.dispatcher import Dispatcher
from workers.poller import Poller
from workers.sweep import sweep

SWEEP = "sweep"


def create_worker(settings: Settings, **overrides: Any) -> Worker:
    """An arq worker for `settings`; `overrides` go to `arq.worker.Worker` (tests use `burst`)."""
    if not settings.redis_url:
        raise ValueError("create_worker needs settings.redis_url")
    frame = settings.arq_redis_url or settings.redis_url
    if cluster_address(frame):  # arq's queue and cron need one Redis
        raise ConfigurationError(
            "REDIS_URL names a Redis Cluster: set TRACKER_ARQ_REDIS_URL to a small Redis of "
            "its own (redis:// or redis+sentinel://) for the workers' arq"
        )
    options: dict[str, Any] = {
        "functions": [],
        "cron_jobs": [
            cron(
                cast(WorkerCoroutine, sweep),
                name=SWEEP,
                second=set(range(0, 60, settings.sweep_interval)),
                timeout=settings.job_timeout,
            )
        ],
        "redis_settings": redis_settings(frame),
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {"settings": settings},
        "poll_delay": settings.queue_poll_interval,
        "keep_result": 0,
        "job_timeout": settings.job_timeout,
        "job_completion_wait": int(settings.shutdown_grace),
        "health_check_interval": 60,
    }
    options.update(overrides)
    return Worker(**options)


async def startup(ctx: dict[str, Any]) -> None:
    """arq's on_startup: open the shared clients, sweep, then start the poller and the
    dispatcher. arq's `ctx` dict becomes the typed `WorkerContext`."""
    settings = cast(Settings, ctx["settings"])
    tracing.configure("qrtracker-worker")  # when OTEL_EXPORTER_OTLP_ENDPOINT is set
    callbacks = Callbacks(
        allow_private=settings.allow_private_callbacks,
        limit=settings.worker_concurrency,
        detailed=settings.record_answers,
    )
    records = ctx["redis"]  # arq's own connection, unless it has a Redis of its own
    if settings.arq_redis_url and settings.redis_url:
        records = ctx["records_pool"] = await connect_records(settings.redis_url)
    pack_with_hiredis(records)
    ctx.update(build_context(settings, records, http_client(settings), callbacks))
    if settings.metrics_port:
        prometheus_client.start_http_server(settings.metrics_port, settings.metrics_host)
    typed = cast(WorkerContext, ctx)
    typed["clock_task"] = await typed["store"].clock.start(typed["redis"])
    await typed["store"].identity.establish()
    await typed["stores"].warm()
    poller, dispatcher, copier = Poller(typed), Dispatcher(typed), Copier(typed)
    ctx["poller"], ctx["dispatcher"], ctx["copier"] = poller, dispatcher, copier
    await sweep(typed)
    # What exists now (modules, settings, clients) lives as long as the process: the collector
    # need not walk it again at every full collection (a busy worker spent 8 % of its CPU in
    # collections before, 3 % since). Collected first, so that the garbage of a worker the
    # supervisor replaced is not frozen with it.
    gc.collect()
    gc.freeze()
    poller.start()
    dispatcher.start()
    copier.start()


async def shutdown(ctx: dict[str, Any]) -> None:
    """arq's on_shutdown: let polls and attempts in flight finish (or hand them back), close
    the clients."""
    grace = cast(Settings, ctx["settings"]).shutdown_grace
    loops = [ctx[name] for name in ("poller", "dispatcher", "copier") if name in ctx]
    await asyncio.gather(*(loop.stop(grace) for loop in loops))
    await clock.stop(ctx.get("clock_task"))
    tracing.shutdown()
    for client in (ctx.get("http"), ctx.get("callbacks"), ctx.get("downloads"), ctx.get("stores")):
        if client is not None:
            await client.aclose()
    if "store" in ctx:
        await ctx["store"].aclose()
    if "records_pool" in ctx:
        await ctx["records_pool"].aclose()
