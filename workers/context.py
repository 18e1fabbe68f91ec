"""The typed context every job and the poller receive. Imports nothing from `workers`."""

from __future__ import annotations

import asyncio
import random
from typing import NotRequired, Protocol, TypedDict

from arq.connections import ArqRedis

from tracker.core.vault import vault_of
from tracker.net.callbacks import Sender
from tracker.net.client import Upstream
from tracker.net.downloads import Downloads
from tracker.net.objects import Stores, stores_of
from tracker.settings import Settings
from tracker.store import Store, store_for
from tracker.store.ratelimit import UpstreamBucket


class Loop(Protocol):
    """What others need of a claiming loop (`workers.claimer.Claimer`): the poller's and the
    dispatcher's."""

    def wake(self) -> None: ...

    def stop_claiming(self) -> None: ...

    async def stop(self, grace: float) -> None: ...


class WorkerContext(TypedDict):
    settings: Settings
    redis: ArqRedis  # set by arq
    store: Store
    http: Upstream  # to QuickRouter
    callbacks: Sender  # webhooks
    downloads: Downloads  # result videos, from the upstream's links
    stores: Stores  # where copies of them go
    rng: random.Random
    buckets: dict[str, UpstreamBucket]  # one per QuickRouter key, made on first use (`bucket`)
    poller: NotRequired[Loop]
    dispatcher: NotRequired[Loop]
    copier: NotRequired[Loop]
    clock_task: NotRequired[asyncio.Task[None]]
    sweep_marks: NotRequired[dict[str, float]]  # client id -> where the sweeper goes on
    job_id: NotRequired[str]
    job_try: NotRequired[int]


def build_context(
    settings: Settings,
    redis: ArqRedis,
    http: Upstream,
    callbacks: Sender,
    rng: random.Random | None = None,
) -> WorkerContext:
    """A context on `redis`, `http` (upstream) and `callbacks` (webhooks), with its own
    downloads of result videos and stores for their copies: the worker's start-up and
    in-process tests use it."""
    vault = vault_of(settings)
    return WorkerContext(
        settings=settings,
        redis=redis,
        store=store_for(settings, redis, patient=True, vault=vault),
        http=http,
        callbacks=callbacks,
        downloads=Downloads(
            allow_private=settings.allow_private_callbacks,
            limit=settings.storage_copies_per_worker * 2,
        ),
        stores=stores_of(settings, vault),
        rng=rng or random.Random(),
        buckets={},
    )


def bucket(ctx: WorkerContext, key: str | None) -> UpstreamBucket:
    """The fleet-wide token bucket of one QuickRouter key: each key's quota holds, whoever's."""
    name = key or ""
    found = ctx["buckets"].get(name)
    if found is None:
        settings = ctx["settings"]
        found = ctx["buckets"][name] = UpstreamBucket(
            ctx["redis"], key, settings.upstream_rate, settings.upstream_burst
        )
    return found
