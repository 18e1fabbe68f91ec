"""The HTTP API: register, list, read, cancel and redeliver tasks; health; OpenAPI.

`create_app(settings)` builds it. Every `/v1` route authenticates a client by its bearer key
and sees only that client's subscriptions; an unknown task and another client's look the same.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, NoReturn

from arq.connections import ArqRedis
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic import ValidationError as PydanticValidationError
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tracker import metrics, openapi, polling, queue
from tracker.callbacks import MAX_CALLBACK_URL_LENGTH, check_callback_url
from tracker.domain import FINAL_EVENTS, Client, EventType, Subscription, Task, TaskState
from tracker.errors import (
    InvalidRequest,
    MethodNotAllowed,
    NotFinal,
    NotFound,
    PayloadTooLarge,
    RateLimited,
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
MAX_METADATA_BYTES = 16 * 1024
MAX_METADATA_DEPTH = 8
MAX_PAGE = 100
TASK_ID_PATTERN = r"^[A-Za-z0-9._:~+=@-]+$"
MAX_TASK_ID_LENGTH = 200
# A first sieve with a readable message; `check_callback_url` has the last word.
CALLBACK_URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#\s]+"

TaskId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_TASK_ID_LENGTH, pattern=TASK_ID_PATTERN),
]


class TaskRegistration(BaseModel):
    """The body of `POST /v1/tasks`."""

    model_config = ConfigDict(extra="forbid")

    task_id: TaskId
    callback_url: Annotated[
        str,
        StringConstraints(
            min_length=1, max_length=MAX_CALLBACK_URL_LENGTH, pattern=CALLBACK_URL_PATTERN
        ),
    ]
    metadata: dict[str, Any] = Field(default_factory=dict)
    events: list[EventType] | None = Field(default=None, min_length=1, max_length=4)

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(metadata)) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata is larger than {MAX_METADATA_BYTES} bytes as JSON")
        if _depth(metadata) > MAX_METADATA_DEPTH:
            raise ValueError(f"metadata nests deeper than {MAX_METADATA_DEPTH} levels")
        return metadata


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def problem(error: TrackerError) -> JSONResponse:
    """An RFC 9457 problem document for `error`."""
    body = {
        "type": PROBLEM_TYPE + error.code,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        **error.extensions,
    }
    return JSONResponse(
        body,
        status_code=error.status,
        media_type="application/problem+json",
        headers=error.headers,
    )


def create_app(settings: Settings, redis: ArqRedis | None = None) -> Starlette:
    """The API for `settings`; uses `redis` if given, else connects to `settings.redis_url`."""
    rng = random.Random()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = redis
        if pool is None:
            if not settings.redis_url:
                raise ValueError("the API needs settings.redis_url")
            pool = queue.connect(settings.redis_url)
        app.state.redis = pool
        app.state.store = Store(
            pool, retention=settings.retention, delivery_window=settings.delivery_window
        )
        try:
            yield
        finally:
            if redis is None:
                await pool.aclose()

    async def authenticate(request: Request) -> tuple[Client, Store]:
        scheme, _, api_key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not api_key.strip():
            raise Unauthorized("send Authorization: Bearer <api key>")
        store: Store = request.app.state.store
        client = await store.clients.for_key(api_key.strip())
        if client is None:
            raise Unauthorized("unknown or revoked API key")
        return client, store

    async def register_task(request: Request) -> Response:
        client, store = await authenticate(request)
        body = await read_json(request)
        try:
            registration = TaskRegistration.model_validate(body)
        except PydanticValidationError as exc:
            raise_validation(exc)
        callback_url = await check_callback_url(
            registration.callback_url, allow_private=settings.allow_private_callbacks
        )
        now = time.time()
        if not await store.clients.admit_registration(client.id, now, settings.registration_rate):
            raise RateLimited(
                f"more than {settings.registration_rate} registrations in one second",
                retry_after=1,
            )
        deadline_at = now + settings.poll_deadline
        result = await store.register(
            client_id=client.id,
            task_id=registration.task_id,
            callback_url=callback_url,
            metadata=registration.metadata,
            events=list(dict.fromkeys(registration.events or FINAL_EVENTS)),
            now=now,
            deadline_at=deadline_at,
            first_poll_at=now + polling.first_delay(settings, rng.random()),
        )
        # The records are written, the task is in the due set for the pollers; a delivery job
        # lost from here on is found by the sweeper.
        redis_pool: ArqRedis = request.app.state.redis
        for delivery in result.deliveries:
            await queue.enqueue_delivery(redis_pool, settings, delivery.id, at=now)
        sub = result.subscription
        metrics.REGISTRATIONS.labels("created" if result.created else "existing").inc()
        return JSONResponse(
            subscription_json(sub),
            status_code=201 if result.created else 200,
            headers={"location": f"/v1/tasks/{sub.task_id}"},
        )

    async def list_tasks(request: Request) -> Response:
        client, store = await authenticate(request)
        params = request.query_params
        state = _state_param(params.get("state"))
        limit = _limit_param(params.get("limit"))
        before = _cursor_param(params.get("cursor"))
        page, next_before = await store.list_tasks(
            client.id, before=before, limit=limit, state=state
        )
        return JSONResponse(
            {
                "tasks": [task_summary_json(task, registered) for task, registered in page],
                "next_cursor": _cursor(next_before) if next_before is not None else None,
            }
        )

    async def read_task(request: Request) -> Response:
        client, store = await authenticate(request)
        task_id = request.path_params["task_id"]
        # The task first: an ended task's deliveries were written with its final state, so the
        # views read after it include them (the other order could show "completed" without).
        task = await store.task(task_id)
        views = await store.subscription_views(task_id, client.id)
        if not views or task is None:
            raise NotFound(f"no task {task_id!r} for this client")
        return JSONResponse(task_json(task, views))

    async def cancel_task(request: Request) -> Response:
        client, store = await authenticate(request)
        task_id = request.path_params["task_id"]
        if not await store.cancel(client.id, task_id, time.time()):
            raise NotFound(f"no task {task_id!r} tracked for this client")
        return Response(status_code=204)

    async def redeliver(request: Request) -> Response:
        client, store = await authenticate(request)
        task_id = request.path_params["task_id"]
        task = await store.task(task_id)
        if task is None or not await store.subscription_views(task_id, client.id):
            raise NotFound(f"no task {task_id!r} for this client")
        if not task.state.is_final:
            raise NotFinal(f"task {task_id!r} is {task.state}; it has no final event yet")
        now = time.time()
        deliveries = await store.redeliver(client.id, task_id, now)
        for delivery in deliveries:
            await queue.enqueue_delivery(request.app.state.redis, settings, delivery.id, at=now)
        return JSONResponse({"deliveries": [d.id for d in deliveries]}, status_code=202)

    gauges = CollectorRegistry(auto_describe=False)
    if settings.redis_url:
        gauges.register(metrics.RedisGauges(settings.redis_url))

    async def metrics_text(request: Request) -> Response:
        own = await run_in_threadpool(generate_latest, gauges)
        return Response(generate_latest(REGISTRY) + own, media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            await request.app.state.redis.ping()
        except (RedisError, OSError):
            return problem(Unavailable("Redis is unreachable"))
        return JSONResponse({"status": "ready"})

    document = openapi.document(TaskRegistration.model_json_schema())

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(document)

    async def on_tracker_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TrackerError)
        return problem(exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        # The router's own 404 and 405, as problems like every other error.
        assert isinstance(exc, HTTPException)
        error = NotFound(exc.detail) if exc.status_code == 404 else MethodNotAllowed(exc.detail)
        error.headers.update(exc.headers or {})  # 405 carries `Allow`
        return problem(error)

    async def on_redis_error(request: Request, exc: Exception) -> Response:
        return problem(Unavailable("Redis is unreachable; nothing was stored, try again"))

    return Starlette(
        routes=[
            route("/v1/tasks", POST=register_task, GET=list_tasks),
            route("/v1/tasks/{task_id}", GET=read_task, DELETE=cancel_task),
            Route("/v1/tasks/{task_id}/redeliver", redeliver, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/openapi.json", openapi_json, methods=["GET"]),
            Route("/metrics", metrics_text, methods=["GET"]),
        ],
        exception_handlers={
            TrackerError: on_tracker_error,
            HTTPException: on_http_error,
            RedisError: on_redis_error,
            ConnectionError: on_redis_error,
        },
        lifespan=lifespan,
    )


Endpoint = Callable[[Request], Awaitable[Response]]


def route(path: str, **handlers: Endpoint) -> Route:
    """One route serving several methods, so a 405's `Allow` names them all."""

    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return Route(path, dispatch, methods=list(handlers))


async def read_json(request: Request) -> Any:
    """The request's JSON body, refusing oversized or malformed ones."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"body is larger than {MAX_BODY_BYTES} bytes")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"body is larger than {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidRequest("body is not valid JSON") from None


def raise_validation(exc: PydanticValidationError) -> NoReturn:
    """Turn pydantic's errors into one 422 problem listing each field."""
    errors = [
        {"field": ".".join(str(part) for part in err["loc"]) or "body", "message": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    raise ValidationFailed(summary, errors=errors) from None


def _state_param(raw: str | None) -> TaskState | None:
    if raw is None:
        return None
    try:
        return TaskState(raw)
    except ValueError:
        raise ValidationFailed(
            f"state must be one of {', '.join(s.value for s in TaskState)}"
        ) from None


def _limit_param(raw: str | None) -> int:
    if raw is None:
        return 20
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise ValidationFailed(f"limit must be an integer from 1 to {MAX_PAGE}")
    return int(raw)


def _cursor(before: float) -> str:
    return base64.urlsafe_b64encode(repr(before).encode()).decode().rstrip("=")


def _cursor_param(raw: str | None) -> float | None:
    if not raw:
        return None
    try:
        decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        value = float(decoded)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ValidationFailed("cursor is not one this API gave") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValidationFailed("cursor is not one this API gave")
    return value


def subscription_json(sub: Subscription) -> dict[str, Any]:
    return {
        "id": sub.id,
        "task_id": sub.task_id,
        "callback_url": sub.callback_url,
        "metadata": sub.metadata,
        "events": [str(e) for e in sub.events],
        "state": str(sub.state),
        "created_at": iso_time(sub.created_at),
    }


def task_summary_json(task: Task, registered_at: float) -> dict[str, Any]:
    """A task as listed: its state and result, without subscriptions or the upstream answer."""
    result = task.result
    return {
        "task_id": task.task_id,
        "state": str(task.state),
        "upstream_status": task.upstream_status,
        "polls": task.polls,
        "registered_at": iso_time(registered_at),
        "updated_at": iso_time(task.updated_at),
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
    }


def task_json(task: Task, views: list[SubscriptionView]) -> dict[str, Any]:
    """The body of `GET /v1/tasks/{task_id}`: only the caller's subscriptions."""
    summary = task_summary_json(task, min(v.subscription.created_at for v in views))
    return {
        **summary,
        "created_at": iso_time(task.created_at),
        "deadline_at": iso_time(task.deadline_at),
        "next_poll_at": iso_time(task.next_poll_at) if task.state is TaskState.TRACKING else None,
        "upstream": task.snapshot,
        "subscriptions": [
            {
                **subscription_json(view.subscription),
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
