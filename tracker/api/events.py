"""`GET /v1/events` (the caller's event feed, paged), `GET /v1/events/stream` (the same events
as they are made, over Server-Sent Events), and the wait behind `GET /v1/tasks/{id}?wait=N`.

Workers append events to each client's feed (`tracker.store.feed`); any API process reads
any feed, so a stream works whichever process a client reaches. A stream or a wait holds one
of the client's `TRACKER_STREAMS_PER_CLIENT` leases while it is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from redis.exceptions import RedisError
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from tracker.api import schemas, views
from tracker.api.auth import authenticate
from tracker.api.describe import (
    CURSOR_SCHEMA,
    FEED_FILTERS,
    SECURED,
    STRING,
    answer,
    problems,
    query,
    ref,
)
from tracker.core.feed import START, Filter, clamped, valid_cursor
from tracker.core.numerals import whole_number
from tracker.core.records import EventType, TaskState
from tracker.errors import RateLimited, ValidationFailed
from tracker.server import abort_connection
from tracker.settings import Settings
from tracker.store import Shard
from tracker.store.feed import FeedWatcher

# Entries one page (or one read of a stream) looks at, at most, to find its filters' matches.
SCAN = 1000
STREAM_BATCH = 100
# A wait looks at its task at least this often, in case the task ends with no event in the
# client's feed (a subscription that takes only status changes).
WAIT_LOOK = 5.0
MAX_WAIT = 60

log = logging.getLogger("tracker.events")


def feed_filter(request: Request) -> Filter:
    """The `type` (repeated, or comma separated) and `task_id` filters of a request."""
    raw = [t for value in request.query_params.getlist("type") for t in value.split(",") if t]
    try:
        types = frozenset(EventType(t) for t in raw)
    except ValueError:
        raise ValidationFailed(
            f"type must be one of {', '.join(t.value for t in EventType)}"
        ) from None
    return Filter(types, request.query_params.get("task_id") or None)


def cursor_param(raw: str | None, name: str) -> str | None:
    if not raw:
        return None
    if not valid_cursor(raw):
        raise ValidationFailed(f"{name} is not a cursor this API gave")
    return raw


def wait_param(raw: str | None) -> int:
    if raw is None:
        return 0
    wait = whole_number(raw)
    if wait is None or wait > MAX_WAIT:
        raise ValidationFailed(f"wait must be a whole number of seconds from 0 to {MAX_WAIT}")
    return wait


async def events_page(request: Request) -> Response:
    """`GET /v1/events?after=&limit=&type=&task_id=`: the caller's events, oldest first."""
    client = await authenticate(request)
    store: Shard = request.app.state.store.shard(client.id)
    after = cursor_param(request.query_params.get("after"), "after") or START
    limit = schemas.limit_param(request.query_params.get("limit"))
    found, cursor, more = await store.feed.page(client.id, after, limit, feed_filter(request), SCAN)
    now = store.clock.now()
    return JSONResponse(
        {
            "data": [views.feed_event_json(e, client, now) for e in found],
            "next_cursor": cursor,
            "has_more": more,
        }
    )


class StreamLease:
    """One of a client's `streams_per_client` leases, held while a stream or a wait is open
    (fleet-wide, in Redis: one whose process died runs out after four heartbeats)."""

    def __init__(self, request: Request, client_id: str) -> None:
        self.store: Shard = request.app.state.store.shard(client_id)
        self.settings: Settings = request.app.state.settings
        self.client_id = client_id
        self.token = secrets.token_hex(8)

    async def take(self) -> None:
        """Take or renew it; 429 when the client holds every lease already."""
        now = self.store.clock.now()
        limit = self.settings.streams_per_client
        until = now + self.settings.stream_heartbeat * 4
        if not await self.store.feed.open_stream(self.client_id, self.token, now, until, limit):
            raise RateLimited(
                f"this client has {limit} event streams and waits open already",
                retry_after=max(1, round(self.settings.stream_heartbeat)),
            )

    async def give_back(self) -> None:
        # Also when the reader went away (a cancel); with Redis away, the lease runs out.
        with anyio.CancelScope(shield=True), contextlib.suppress(RedisError):
            await self.store.feed.close_stream(self.client_id, self.token)


async def events_stream(request: Request) -> Response:
    """`GET /v1/events/stream`: the caller's events as they are made, after `Last-Event-ID`
    (or `after`), else from now on; the same filters as the feed. Starts with a `ready`
    event carrying the cursor it starts after."""
    client = await authenticate(request)
    settings: Settings = request.app.state.settings
    store: Shard = request.app.state.store.shard(client.id)
    watcher: FeedWatcher = request.app.state.watchers[store.index]
    wanted = feed_filter(request)
    start = cursor_param(request.headers.get("last-event-id"), "Last-Event-ID")
    start = start or cursor_param(request.query_params.get("after"), "after")
    last = await store.feed.last_cursor(client.id)
    cursor = clamped(start, last) if start else last
    lease = StreamLease(request, client.id)
    await lease.take()

    async def events() -> AsyncIterator[ServerSentEvent]:
        nonlocal cursor, client
        checked = time.monotonic()
        # First the cursor it starts after, as the `id` of a `ready` event: a reader cut
        # off before any event resumes from there, not from a later "now".
        yield ServerSentEvent(data=json.dumps({"cursor": cursor}), id=cursor, event="ready")
        async with watcher.watching(client.id, cursor) as woken:
            while True:
                woken.clear()  # before reading: what arrives during the read wakes us
                found, cursor, more = await store.feed.page(
                    client.id, cursor, STREAM_BATCH, wanted, SCAN
                )
                now = store.clock.now()
                for event in found:
                    yield ServerSentEvent(
                        data=json.dumps(views.feed_event_json(event, client, now)),
                        id=event.cursor,
                        event=event.type.value,
                    )
                if time.monotonic() - checked >= settings.stream_heartbeat:
                    # Once a heartbeat, not once a batch (busy or idle): the lease lasts
                    # four. And a stream outlives the request that opened it: a client
                    # revoked since is cut off, a rotated secret signs from here on.
                    fresh = await store.clients.get(client.id)
                    if fresh is None or fresh.revoked:
                        return
                    await lease.take()
                    client, checked = fresh, time.monotonic()
                if more:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), settings.stream_heartbeat)

    return LeasedStream(
        events(), lease, ping=settings.stream_heartbeat, send_timeout=settings.stream_send_timeout,
        headers={"cache-control": "no-store"},
    )  # fmt: skip


class LeasedStream(EventSourceResponse):
    """An event stream that holds its client's lease until its socket is gone. A reader that
    takes no bytes for TRACKER_STREAM_SEND_TIMEOUT is cut off by aborting the connection:
    closing it would keep flushing what the server holds for it (a socket's buffers and a
    batch) for as long as it trickles, with its lease free for yet another stream."""

    def __init__(self, content: AsyncIterator[ServerSentEvent], lease: StreamLease, **kw: Any):
        super().__init__(content, **kw)
        self.lease = lease

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            abort_connection(scope)
            log.info("an event stream's reader stalled; cut off")
        finally:
            await self.lease.give_back()


async def wait_for_end(request: Request, client_id: str, tracking_id: str, seconds: int) -> None:
    """Return once the task tracked as `tracking_id` is no longer tracking, or after
    `seconds`: the wait behind `GET /v1/tasks/{task_id}?wait=N`."""
    store: Shard = request.app.state.store.shard(client_id)
    watcher: FeedWatcher = request.app.state.watchers[store.index]
    lease = StreamLease(request, client_id)
    await lease.take()
    deadline = time.monotonic() + seconds
    try:
        cursor = await store.feed.last_cursor(client_id)
        async with watcher.watching(client_id, cursor) as woken:
            while (left := deadline - time.monotonic()) > 0:
                woken.clear()
                task = await store.tasks.get(tracking_id)
                if task is None or task.state is not TaskState.TRACKING:
                    return
                fresh = await store.clients.get(client_id)
                if fresh is None or fresh.revoked:  # the caller answers it 401
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), min(left, WAIT_LOOK))
                await lease.take()
    finally:
        await lease.give_back()


# These routes as the OpenAPI document describes them (`tracker.api.openapi` gathers every
# module's).
PATHS: dict[str, Any] = {
    "/v1/events": {
        "get": {
            "summary": "The caller's event feed, oldest first",
            "security": SECURED,
            "parameters": [
                query("after", CURSOR_SCHEMA, "the cursor to start after"),
                query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "events"),
                *FEED_FILTERS,
            ],
            "responses": {
                "200": answer("One page of events.", ref("FeedPage")),
                **problems(401, 422, 503),
            },
        },
    },
    "/v1/events/stream": {
        "get": {
            "summary": "The caller's events as they are made (Server-Sent Events)",
            "security": SECURED,
            "parameters": [
                query("after", CURSOR_SCHEMA, "start after this cursor (default: now)"),
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "schema": CURSOR_SCHEMA,
                    "description": "resume after this cursor (wins over `after`)",
                },
                *FEED_FILTERS,
            ],
            "responses": {
                "200": {
                    "description": "A `ready` event (its `id`: the cursor the stream "
                    "starts after), then one SSE event per feed event: `id` its cursor, "
                    "`event` its type, `data` the FeedEvent as JSON; a comment as a "
                    "heartbeat every TRACKER_STREAM_HEARTBEAT seconds.",
                    "content": {"text/event-stream": {"schema": STRING}},
                },
                **problems(401, 422, 429, 503),
            },
        },
    },
}
