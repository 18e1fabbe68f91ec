"""The typed context every job receives, and the worker's start-up and shutdown."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, cast

import httpx
import prometheus_client
from arq.connections import ArqRedis
from httpx_aiohttp import AiohttpTransport

from tracker import __version__
from tracker.callbacks import GuardedTransport
from tracker.estimates import MIN_SAMPLES, TOTAL
from tracker.ratelimit import UpstreamBucket
from tracker.settings import Settings
from tracker.store import Store

if TYPE_CHECKING:
    from workers.poller import Poller


class LearnedCache:
    """What finished tasks taught, per model, re-read from Redis at most every `ttl` seconds."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.entries: dict[str, tuple[float, dict[str, list[float]]]] = {}

    async def get(self, store: Store, model: str, now: float) -> dict[str, list[float]]:
        cached = self.entries.get(model)
        # While a model has too few samples to predict from, look again soon: it is learning.
        ttl = self.ttl if cached and len(cached[1].get(TOTAL, ())) >= MIN_SAMPLES else self.ttl / 15
        if cached is None or now - cached[0] > ttl:
            cached = (now, await store.learned(model))
            self.entries[model] = cached
        return cached[1]


class WorkerContext(TypedDict):
    settings: Settings
    redis: ArqRedis  # set by arq
    store: Store
    http: httpx.AsyncClient
    rng: random.Random
    bucket: UpstreamBucket
    learned: LearnedCache
    poller: Poller
    job_id: NotRequired[str]
    job_try: NotRequired[int]


def http_client(settings: Settings) -> httpx.AsyncClient:
    """The one HTTP client of a worker process; each call sets its own time-out.

    Requests to QuickRouter go over aiohttp (httpx's own transport makes several times fewer
    requests per CPU second; see the README's Performance section). Every other request is a
    callback, and goes through the guard that lets it reach public addresses only.
    """
    limits = httpx.Limits(max_connections=settings.worker_concurrency)
    upstream = httpx.URL(settings.quickrouter_base_url)
    origin = f"{upstream.scheme}://{upstream.netloc.decode()}"
    return httpx.AsyncClient(
        transport=GuardedTransport(
            httpx.AsyncHTTPTransport(limits=limits),
            allow_private=settings.allow_private_callbacks,
        ),
        mounts={origin: AiohttpTransport(limits=limits)},
        timeout=httpx.Timeout(settings.upstream_timeout),
        follow_redirects=False,
        headers={"user-agent": f"quickrouter-tracker/{__version__}"},
    )


async def startup(ctx: dict[str, Any]) -> None:
    """arq's on_startup: open the shared clients, then sweep what a crash left overdue."""
    settings = cast(Settings, ctx["settings"])
    ctx["store"] = Store(
        ctx["redis"], retention=settings.retention, delivery_window=settings.delivery_window
    )
    ctx["http"] = http_client(settings)
    ctx["rng"] = random.Random()
    ctx["bucket"] = UpstreamBucket(
        ctx["redis"], settings.quickrouter_api_key, settings.upstream_rate, settings.upstream_burst
    )
    ctx["learned"] = LearnedCache(settings.learning_refresh)
    if settings.metrics_port:
        prometheus_client.start_http_server(settings.metrics_port, settings.metrics_host)
    from workers.poller import Poller  # it needs this module's WorkerContext

    ctx["poller"] = Poller(cast(WorkerContext, ctx))
    from workers.sweep import sweep_overdue  # a cycle at import time otherwise

    await sweep_overdue(cast(WorkerContext, ctx))
    ctx["poller"].start()


async def shutdown(ctx: dict[str, Any]) -> None:
    """arq's on_shutdown: let polls in flight finish (or hand them back), close the clients."""
    poller = ctx.get("poller")
    if poller is not None:
        await poller.stop(cast(Settings, ctx["settings"]).shutdown_grace)
    http = ctx.get("http")
    if isinstance(http, httpx.AsyncClient):
        await http.aclose()
