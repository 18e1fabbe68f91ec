"""The HTTP API: register, read and cancel tasks; health and readiness. `create_app` builds it."""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, NoReturn

from arq.connections import ArqRedis
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic import ValidationError as PydanticValidationError
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tracker import polling, queue
from tracker.callbacks import check_callback_url
from tracker.domain import FINAL_EVENTS, Client, EventType, Task
from tracker.errors import (
    InvalidRequest,
    NotFound,
    TrackerError,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from tracker.events import iso_time
from tracker.settings import Settings
from tracker.store import Store, SubscriptionView

PROBLEM_TYPE = "urn:qrtracker:problem:"
MAX_BODY_BYTES = 64 * 1024

TaskId = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:~+=@-]+$")
]


class TaskRegistration(BaseModel):
    """The body of `POST /v1/tasks`."""

    model_config = ConfigDict(extra="forbid")

    task_id: TaskId
    callback_url: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    metadata: dict[str, Any] = Field(default_factory=dict)
    events: list[EventType] | None = None


def problem(error: TrackerError) -> JSONResponse:
    """An RFC 9457 problem document for `error`."""
    body = {
        "type": PROBLEM_TYPE + error.code,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        **error.extensions,
    }
    return JSONResponse(body, status_code=error.status, media_type="application/problem+json")


def create_app(settings: Settings, redis: ArqRedis | None = None) -> Starlette:
    """The API for `settings`; uses `redis` if given, else opens a pool on `settings.redis_url`."""
    rng = random.Random()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = redis
        if pool is None:
            if not settings.redis_url:
                raise ValueError("the API needs settings.redis_url")
            pool = queue.connect(settings.redis_url)
        app.state.redis = pool
        app.state.store = Store(pool)
        try:
            yield
        finally:
            if redis is None:
                await pool.aclose()

    async def authenticate(request: Request) -> Client:
        scheme, _, api_key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not api_key.strip():
            raise Unauthorized("send Authorization: Bearer <api key>")
        client = await request.app.state.store.client_for_key(api_key.strip())
        if client is None:
            raise Unauthorized("unknown or revoked API key")
        return client  # type: ignore[no-any-return]

    async def register_task(request: Request) -> Response:
        client = await authenticate(request)
        body = await read_json(request)
        try:
            registration = TaskRegistration.model_validate(body)
        except PydanticValidationError as exc:
            raise_validation(exc)
        callback_url = check_callback_url(registration.callback_url)
        store: Store = request.app.state.store
        now = time.time()
        result = await store.register(
            client_id=client.id,
            task_id=registration.task_id,
            callback_url=callback_url,
            metadata=registration.metadata,
            events=registration.events or list(FINAL_EVENTS),
            now=now,
            deadline_at=now + settings.poll_deadline,
            first_poll_at=now + polling.first_delay(settings, rng.random()),
        )
        # The records are written; a wake-up lost here is found by the sweeper.
        if result.poll_at is not None:
            await queue.enqueue_poll(
                request.app.state.redis,
                settings,
                registration.task_id,
                at=result.poll_at,
                deadline_at=now + settings.poll_deadline,
            )
        for delivery in result.deliveries:
            await queue.enqueue_delivery(request.app.state.redis, settings, delivery.id, at=now)
        sub = result.subscription
        return JSONResponse(
            {
                "id": sub.id,
                "task_id": sub.task_id,
                "callback_url": sub.callback_url,
                "metadata": sub.metadata,
                "events": [str(e) for e in sub.events],
                "state": str(sub.state),
                "created_at": iso_time(sub.created_at),
            },
            status_code=201 if result.created else 200,
            headers={"location": f"/v1/tasks/{sub.task_id}"},
        )

    async def read_task(request: Request) -> Response:
        client = await authenticate(request)
        task_id = request.path_params["task_id"]
        store: Store = request.app.state.store
        views = await store.subscription_views(task_id, client.id)
        task = await store.task(task_id)
        if not views or task is None:
            raise NotFound(f"no task {task_id!r} for this client")
        return JSONResponse(task_json(task, views))

    async def cancel_task(request: Request) -> Response:
        client = await authenticate(request)
        task_id = request.path_params["task_id"]
        if not await request.app.state.store.cancel(client.id, task_id, time.time()):
            raise NotFound(f"no task {task_id!r} tracked for this client")
        return Response(status_code=204)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            await request.app.state.redis.ping()
        except (RedisError, OSError):
            return problem(Unavailable("Redis is unreachable"))
        return JSONResponse({"status": "ready"})

    async def on_tracker_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TrackerError)
        return problem(exc)

    async def on_redis_error(request: Request, exc: Exception) -> Response:
        return problem(Unavailable("Redis is unreachable; nothing was stored, try again"))

    return Starlette(
        routes=[
            Route("/v1/tasks", register_task, methods=["POST"]),
            Route("/v1/tasks/{task_id}", read_task, methods=["GET"]),
            Route("/v1/tasks/{task_id}", cancel_task, methods=["DELETE"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        exception_handlers={
            TrackerError: on_tracker_error,
            RedisError: on_redis_error,
            ConnectionError: on_redis_error,
        },
        lifespan=lifespan,
    )


async def read_json(request: Request) -> Any:
    """The request's JSON body, refusing oversized or malformed ones."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise InvalidRequest(f"body is larger than {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("body is not valid JSON") from None


def raise_validation(exc: PydanticValidationError) -> NoReturn:
    errors = [
        {"field": ".".join(str(part) for part in err["loc"]) or "body", "message": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    raise ValidationFailed(summary, errors=errors) from None


def task_json(task: Task, views: list[SubscriptionView]) -> dict[str, Any]:
    """The body of `GET /v1/tasks/{task_id}`: only the caller's subscriptions."""
    result = task.result
    return {
        "task_id": task.task_id,
        "state": str(task.state),
        "upstream_status": task.upstream_status,
        "polls": task.polls,
        "created_at": iso_time(task.created_at),
        "updated_at": iso_time(task.updated_at),
        "deadline_at": iso_time(task.deadline_at),
        "next_poll_at": iso_time(task.next_poll_at) if not task.state.is_final else None,
        "result": None
        if result is None
        else {
            "video_url": result.video_url,
            "original_video_url": result.original_video_url,
            "enhanced_prompt": result.enhanced_prompt,
            "model": result.model,
            "error": None
            if result.error_code is None
            else {"code": result.error_code, "message": result.error_message},
        },
        "upstream": task.snapshot,
        "subscriptions": [
            {
                "id": view.subscription.id,
                "callback_url": view.subscription.callback_url,
                "metadata": view.subscription.metadata,
                "events": [str(e) for e in view.subscription.events],
                "state": str(view.subscription.state),
                "created_at": iso_time(view.subscription.created_at),
                "deliveries": [
                    {
                        "id": delivery.id,
                        "type": str(delivery.event_type),
                        "state": str(delivery.state),
                        "attempts": [
                            {
                                "at": iso_time(a.at),
                                "status_code": a.status_code,
                                "error": a.error,
                                "latency_ms": a.latency_ms,
                            }
                            for a in attempts
                        ],
                    }
                    for delivery, attempts in view.deliveries
                ],
            }
            for view in views
        ],
    }
