"""The `/v1/tasks` endpoints: one class per resource, one method per HTTP verb.

Starlette's `HTTPEndpoint` answers 405 with `Allow` for the verbs a class lacks.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tracker import metrics, tracing
from tracker.api import events, idempotency, schemas, views
from tracker.api.auth import authenticate
from tracker.api.describe import (
    IDEMPOTENCY_KEY,
    SECURED,
    STRING,
    TASK_ID,
    answer,
    body,
    obj,
    problems,
    query,
    ref,
)
from tracker.api.problems import validated
from tracker.api.storage import keeps_videos
from tracker.core import estimates, jsontext, polling, upstream_keys
from tracker.core import headers as subscription_headers
from tracker.core.ids import tracking_id
from tracker.core.limits import Limits
from tracker.core.records import (
    FINAL_EVENTS,
    DeliveryState,
    EventType,
    Subscription,
    Task,
    TaskState,
)
from tracker.errors import NotFound, RateLimited, TrackerError, Unavailable
from tracker.links import copies_of
from tracker.net.guard import check_callback_url
from tracker.settings import Settings
from tracker.store import Registration, Shard, Store
from tracker.store.ratelimit import admit_registration

# A registration with an Idempotency-Key still `started` this long after it began died before
# its answer was recorded: registering is idempotent, so a retry with the same body takes the
# key over and registers (a younger one is still running: 409).
STALE_REGISTRATION = 30.0


async def tracked_as(store: Shard, client_id: str, task_id: str) -> str:
    """The tracking id of the client's task with upstream id `task_id`: under the shared key,
    or under one of its own keys (`tracker.core.ids.tracking_id`); 404 if it has none."""
    found = await store.tasks.tracked_as(client_id, task_id)
    if found is None:
        raise NotFound(f"no task {task_id!r} for this client")
    return found


async def owned_task(store: Shard, client_id: str, task_id: str) -> tuple[Task, list[Subscription]]:
    """The task and the client's subscriptions to it; 404 if it has none (`Tasks.owned`)."""
    found = await store.tasks.owned(client_id, task_id)
    if found is None:
        raise NotFound(f"no task {task_id!r} for this client")
    return found


async def polling_and_keeping(
    request: Request, client_id: str, requested_key: str | None, keep_videos: bool | None
) -> tuple[str, bool]:
    """The fingerprint of the key a registration's task is polled with, or the shared scope
    (`tracker.core.upstream_keys.choose`), and whether it keeps copies (`keeps_videos`), from
    one read of the client's settings."""
    settings: Settings = request.app.state.settings
    store: Store = request.app.state.store
    names, own = await store.registering(client_id)
    name = upstream_keys.choose(requested_key, names, shared_allowed=settings.shared_upstream_key)
    return name, keeps_videos(settings, own, keep_videos)


async def checked_callback(request: Request, url: str | None) -> str:
    """The registration's callback URL once the guard passed it (`tracker.net.guard`), or ""
    for none: the subscription then follows the client's event feed only."""
    if url is None:
        return ""
    settings: Settings = request.app.state.settings
    return await check_callback_url(url, allow_private=settings.allow_private_callbacks)


async def admit(request: Request, client_id: str) -> None:
    """Count one registration against the client's rate; 429 past it."""
    settings: Settings = request.app.state.settings
    store: Shard = request.app.state.store.shard(client_id)
    if not await admit_registration(
        store.redis, store.keys, client_id, store.clock.now(), settings.registration_rate
    ):
        raise RateLimited(
            f"more than {settings.registration_rate} registrations in one second", retry_after=1
        )


async def subscribe(
    request: Request,
    client_id: str,
    task_id: str,
    *,
    callback_url: str,
    metadata: dict[str, Any],
    events: list[EventType] | None,
    upstream_key: str,
    keep_videos: bool = False,
    headers: dict[str, str] | None = None,
    admitted: bool = False,
) -> Registration:
    """Register a checked callback on `task_id` for the client (`POST /v1/tasks`, and
    `POST /v1/videos` once QuickRouter made the task): within the client's rate (counted here
    unless `admitted` already), written durably before the answer."""
    settings: Settings = request.app.state.settings
    store: Shard = request.app.state.store.shard(client_id)
    if not admitted:
        await admit(request, client_id)
    now = store.clock.now()
    with tracing.task_span(
        "register", tracking_id(task_id, upstream_key), client_id=client_id
    ):  # fmt: skip
        result = await store.registrations.register(
            client_id=client_id,
            task_id=task_id,
            callback_url=callback_url,
            metadata=metadata,
            events=list(dict.fromkeys(events or FINAL_EVENTS)),
            now=now,
            deadline_at=now + settings.poll_deadline,
            first_poll_at=now + await first_delay(request, task_id, now),
            limits=Limits.of(settings),
            upstream_key=upstream_key,
            shared_tasks=settings.shared_tasks,
            keep_videos=keep_videos,
            header_names=tuple(headers or ()),
            sealed_headers=store.clients.vault.seal(json.dumps(headers)) if headers else "",
        )
    # The records are written: the task is in the due set for the pollers, and any delivery
    # (the task had ended) in the due set for the dispatchers. With replicas to wait for,
    # they must be there too before the client is told so.
    written = store.keys.subscription(result.subscription.id)
    if not await store.replicated(settings.redis_wait_replicas, within=1.0, written=written):
        raise Unavailable(
            "the registration is not yet on enough Redis replicas (a failover may be under "
            "way); send it again: it is idempotent"
        )
    metrics.REGISTRATIONS.labels("created" if result.created else "existing").inc()
    return result


async def first_delay(request: Request, task_id: str, now: float) -> float:
    """Seconds to a new registration's first poll (`polling.first_delay`), on what the task's
    model taught."""
    store: Store = request.app.state.store
    learned = await store.learning.cached(polling.model_of(task_id) or "unknown", now)
    # The id tells when the task was made (to the second: early rather than late).
    created = min(now, estimates.created_at(None, task_id, now))
    return polling.first_delay(
        request.app.state.settings, request.app.state.rng.random(), learned, now, created
    )


class TaskCollection(HTTPEndpoint):
    """`POST /v1/tasks` registers; `GET /v1/tasks` lists the client's tasks."""

    async def post(self, request: Request) -> Response:
        client = await authenticate(request)
        settings: Settings = request.app.state.settings
        store: Shard = request.app.state.store.shard(client.id)
        body = await schemas.read_json(request, settings.request_body_timeout)
        registration = validated(schemas.TaskRegistration, body)
        callback_url = await checked_callback(request, registration.callback_url)
        key, keep = await polling_and_keeping(
            request, client.id, registration.upstream_key, registration.keep_videos
        )
        sent_headers = subscription_headers.checked(registration.headers or {})
        # Counted before any Idempotency-Key record is written, so records cannot be made
        # faster than registrations.
        await admit(request, client.id)
        # Registering is idempotent already; with an Idempotency-Key the first answer comes
        # back as it was (201, not 200), and the key cannot be reused for another body.
        idempotency_key = idempotency.key_of(request)
        token = secrets.token_hex(8)
        if idempotency_key is not None:
            fingerprint = idempotency.fingerprint("POST /v1/tasks", body)
            earlier = await store.idempotency.begin(
                client.id, idempotency_key, fingerprint, store.clock.now(), token,
                stale=STALE_REGISTRATION,
            )  # fmt: skip
            if earlier is not None:
                replayed = idempotency.replay(earlier, fingerprint)
                if replayed is None:  # the first is still running: never run it beside it
                    raise idempotency.still_running()
                return replayed
        try:
            result = await subscribe(
                request,
                client.id,
                registration.task_id,
                callback_url=callback_url,
                metadata=registration.metadata,
                events=registration.events,
                upstream_key=key,
                keep_videos=keep,
                headers=sent_headers,
                admitted=True,
            )
        except TrackerError:
            if idempotency_key is not None:  # refused, nothing stored: the key is free again
                await store.idempotency.release(client.id, idempotency_key, token)
            raise
        sub = result.subscription
        status = 201 if result.created else 200
        location = f"/v1/tasks/{sub.task_id}"
        if idempotency_key is not None:
            answer = jsontext.dumps(views.subscription_json(sub)).decode()
            await store.idempotency.done(
                client.id, idempotency_key, token, status, answer, location
            )
        return JSONResponse(
            views.subscription_json(sub), status_code=status, headers={"location": location}
        )

    async def get(self, request: Request) -> Response:
        client = await authenticate(request)
        store: Shard = request.app.state.store.shard(client.id)
        params = request.query_params
        page, next_before = await store.task_index.list_for_client(
            client.id,
            before=schemas.cursor_param(params.get("cursor")),
            limit=schemas.limit_param(params.get("limit")),
            state=schemas.state_param(params.get("state")),
        )
        return JSONResponse(
            {
                "tasks": [views.task_summary_json(task, at) for task, at in page],
                "next_cursor": schemas.cursor(next_before) if next_before is not None else None,
            }
        )


class TaskResource(HTTPEndpoint):
    """`GET /v1/tasks/{task_id}` shows a task; `DELETE` stops the client's subscriptions."""

    async def get(self, request: Request) -> Response:
        client = await authenticate(request)
        store: Shard = request.app.state.store.shard(client.id)
        wait = events.wait_param(request.query_params.get("wait"))
        task, mine = await owned_task(store, client.id, request.path_params["task_id"])
        if wait and task.state is TaskState.TRACKING:
            # A long poll: answer as soon as the task ends, or after `wait` seconds.
            await events.wait_for_end(request, client.id, task.tracking_id, wait)
            client = await authenticate(request)  # revoked meanwhile: 401, not the task
            task, mine = await owned_task(store, client.id, request.path_params["task_id"])
        delivered, destinations = await store.task_view(client.id, task, mine, store.clock.now())
        found = views.task_json(task, delivered, destinations)
        found["storage"] = await copies_of(
            store, request.app.state.stores, client.id, task,
            request.app.state.settings.storage_link_ttl,
        )  # fmt: skip
        return JSONResponse(found)

    async def delete(self, request: Request) -> Response:
        client = await authenticate(request)
        store: Shard = request.app.state.store.shard(client.id)
        task_id = request.path_params["task_id"]
        tid = await tracked_as(store, client.id, task_id)
        if not await store.tasks.cancel(client.id, tid, store.clock.now()):
            raise NotFound(f"no task {task_id!r} tracked for this client")
        # Its copies go too (a worker removes the objects).
        await store.copies.remove_for(tid, client.id, store.clock.now())
        return Response(status_code=204)


class Redelivery(HTTPEndpoint):
    """`POST /v1/tasks/{task_id}/redeliver`: the final event again, to the client's receivers."""

    async def post(self, request: Request) -> Response:
        client = await authenticate(request)
        settings: Settings = request.app.state.settings
        store: Shard = request.app.state.store.shard(client.id)
        task, mine = await owned_task(store, client.id, request.path_params["task_id"])
        before = await store.redeliver_final(
            client.id, task, mine, store.clock.now(), settings.redeliveries_per_minute
        )
        return JSONResponse(
            {"deliveries": [d.id for d in before], "was": {d.id: str(d.state) for d in before}},
            status_code=202,
        )


# These routes as the OpenAPI document describes them (`tracker.api.openapi` gathers every
# module's).
PATHS: dict[str, Any] = {
    "/v1/tasks": {
        "post": {
            "summary": "Track a task and subscribe a callback to it",
            "security": SECURED,
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": body(ref("TaskRegistration")),
            "responses": {
                "201": answer("A new subscription.", ref("Subscription")),
                "200": answer("The same subscription, registered before.", ref("Subscription")),
                **problems(400, 401, 409, 413, 422, 429, 503),
            },
        },
        "get": {
            "summary": "The caller's tasks, newest first",
            "description": "A page looks at 1,000 tasks at most: with a `state` few "
            "tasks are in, it may be short or empty; the list ends where `next_cursor` "
            "is null.",
            "security": SECURED,
            "parameters": [
                {
                    "name": "state",
                    "in": "query",
                    "required": False,
                    "schema": {"enum": [s.value for s in TaskState]},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "required": False,
                    "schema": STRING,
                    "description": "`next_cursor` of the page before.",
                },
            ],
            "responses": {
                "200": answer("One page of tasks.", ref("TaskList")),
                **problems(401, 422, 503),
            },
        },
    },
    "/v1/tasks/{task_id}": {
        "parameters": [TASK_ID],
        "get": {
            "summary": "A task, with the caller's subscriptions and deliveries",
            "security": SECURED,
            "parameters": [
                query(
                    "wait",
                    {"type": "integer", "minimum": 0, "maximum": 60},
                    "a long poll: answer as soon as the task ends, or after this "
                    "many seconds with its state then",
                )
            ],
            "responses": {
                "200": answer("The task.", ref("Task")),
                **problems(401, 404, 422, 429, 503),
            },
        },
        "delete": {
            "summary": "Stop tracking the task for the caller",
            "security": SECURED,
            "responses": {
                "204": {"description": "Cancelled."},
                **problems(401, 404, 503),
            },
        },
    },
    "/v1/tasks/{task_id}/redeliver": {
        "parameters": [TASK_ID],
        "post": {
            "summary": "Send an ended task's final event again (same webhook-id)",
            "security": SECURED,
            "responses": {
                "202": answer(
                    "The deliveries due again at once; `was`: what each was doing "
                    "(pending: in backoff or in flight; delivered, dead, gone, skipped)",
                    obj(
                        {
                            "deliveries": {"type": "array", "items": STRING},
                            "was": {
                                "type": "object",
                                "additionalProperties": {"enum": [s.value for s in DeliveryState]},
                            },
                        }
                    ),
                ),
                **problems(401, 404, 409, 503),
            },
        },
    },
}
