"""`create_app(settings)`: the routes, the error handlers, and the state they share."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

from arq.connections import ArqRedis
from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.exceptions import HTTPException
from starlette.routing import Mount, Route

from tracker import tracing
from tracker.api import deliveries, destinations, events, openapi, problems, service, storage
from tracker.api.destinations import Recovery
from tracker.api.operations import OperationalWebhookResource
from tracker.api.schemas import OperationalWebhook, TaskRegistration
from tracker.api.storage import StorageResource, StorageSettings
from tracker.api.tasks import Redelivery, TaskCollection, TaskResource
from tracker.api.upstream_keys import UpstreamKeyCollection, UpstreamKeyResource
from tracker.api.videos import VideoCollection
from tracker.core.vault import vault_of
from tracker.errors import TrackerError
from tracker.net.client import http_client
from tracker.net.objects import stores_of
from tracker.settings import Settings
from tracker.store import clock, store_for
from tracker.store.connection import connect
from tracker.store.feed import FeedWatcher
from tracker.store.gauges import RedisGauges
from tracker.ui import create_ui


def create_app(settings: Settings, redis: ArqRedis | None = None) -> Starlette:
    """The API for `settings`; uses `redis` if given, else connects to `settings.redis_url`.

    Endpoints read what they share from `request.app.state`: `settings`, `store` (whose
    `redis` can also enqueue jobs), `rng`, `gauges`, `openapi`, `http` (to QuickRouter) and
    `watcher` (wakes event streams and waits: `tracker.store.feed`).
    """

    vault = vault_of(settings)  # refuse to start without a key, not at the first request
    state = State()
    ui = create_ui(settings, state)  # the dashboard shares the API's state

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = redis
        if pool is None:
            if not settings.redis_url:
                raise ValueError("the API needs settings.redis_url")
            pool = connect(settings.redis_url)
        app.state.store = store = store_for(settings, pool, patient=False, vault=vault)
        tracing.configure("qrtracker-api")  # when OTEL_EXPORTER_OTLP_ENDPOINT is set
        syncing = await app.state.store.clock.start(pool)
        with contextlib.suppress(RedisError, OSError):  # else read at the first request
            await app.state.store.identity.establish()
        app.state.http = http_client(settings)  # to QuickRouter, for create-and-track
        # One per partition: on a cluster, one XREAD cannot read feeds of several slots.
        app.state.watchers = [FeedWatcher(s.redis, s.keys) for s in store.shards]
        for watcher in app.state.watchers:
            watcher.start()
        try:
            yield
        finally:
            for watcher in app.state.watchers:
                await watcher.stop()
            await app.state.stores.aclose()
            await app.state.http.aclose()
            await clock.stop(syncing)
            tracing.shutdown()
            await store.aclose()
            if redis is None:
                await pool.aclose()

    app = Starlette(
        routes=[
            Route("/v1/tasks", TaskCollection),
            Route("/v1/tasks/{task_id}", TaskResource),
            Route("/v1/tasks/{task_id}/redeliver", Redelivery),
            Route("/v1/deliveries/{delivery_id}", deliveries.delivery, methods=["GET"]),
            Route("/v1/deliveries/{delivery_id}/resend", deliveries.resend, methods=["POST"]),
            Route("/v1/destinations", destinations.destinations_page, methods=["GET"]),
            Route("/v1/destinations/recover", destinations.recover, methods=["POST"]),
            Route("/v1/destinations/enable", destinations.enable, methods=["POST"]),
            Route("/v1/recoveries/{recovery_id}", destinations.recovery_progress, methods=["GET"]),
            Route("/v1/operational-webhook", OperationalWebhookResource),
            Route("/v1/videos", VideoCollection),
            Route("/v1/events", events.events_page, methods=["GET"]),
            Route("/v1/events/stream", events.events_stream, methods=["GET"]),
            Route("/v1/upstream-keys", UpstreamKeyCollection),
            Route("/v1/storage", StorageResource),
            Route("/v1/files/{key:path}", storage.stored_file, methods=["GET"]),
            Route("/v1/upstream-keys/{fingerprint}", UpstreamKeyResource),
            Route("/healthz", service.healthz, methods=["GET"]),
            Route("/readyz", service.readyz, methods=["GET"]),
            Route("/openapi.json", service.openapi_json, methods=["GET"]),
            Route("/metrics", service.metrics_text, methods=["GET"]),
            Mount("/ui", app=ui),
        ],
        exception_handlers={
            TrackerError: problems.on_tracker_error,
            HTTPException: problems.on_http_error,
            RedisError: problems.on_redis_error,
            ConnectionError: problems.on_redis_error,
        },
        lifespan=lifespan,
    )
    app.state = state
    app.state.settings = settings
    app.state.rng = random.Random()
    app.state.stores = stores_of(settings, vault)
    app.state.gauges = CollectorRegistry(auto_describe=False)
    if settings.redis_url:
        app.state.gauges.register(RedisGauges(settings.redis_url, settings.partitions))
    app.state.openapi = api_document()
    return app


def api_document() -> dict[str, Any]:
    """The OpenAPI document, with the request bodies' schemas from their pydantic models."""
    return openapi.document(
        TaskRegistration.model_json_schema(),
        StorageSettings.model_json_schema(),
        Recovery.model_json_schema(),
        OperationalWebhook.model_json_schema(),
    )
