"""The routes for operators and tools: liveness, readiness, metrics, the OpenAPI document."""

from __future__ import annotations

import hmac
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tracker.api.describe import JSON_OBJECT, STRING, answer, obj, problems
from tracker.api.problems import problem
from tracker.errors import DataLost, Unauthorized, Unavailable
from tracker.store.identity import LOST


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    try:
        await request.app.state.store.redis.ping()
        intact = await request.app.state.store.identity.verify()
    except (RedisError, OSError):
        return problem(Unavailable("Redis is unreachable"))
    if not intact:
        return problem(DataLost(LOST))
    return JSONResponse({"status": "ready"})


async def metrics_text(request: Request) -> Response:
    """This process's metrics, and the fleet's gauges read from Redis at scrape time.

    With TRACKER_METRICS_TOKEN set, only a scraper that sends it as a bearer token."""
    token = request.app.state.settings.metrics_token
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            return problem(Unauthorized("send Authorization: Bearer <TRACKER_METRICS_TOKEN>"))
    gauges = await run_in_threadpool(generate_latest, request.app.state.gauges)
    return Response(generate_latest(REGISTRY) + gauges, media_type=CONTENT_TYPE_LATEST)


async def openapi_json(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


# These routes as the OpenAPI document describes them (`tracker.api.openapi` gathers every
# module's).
PATHS: dict[str, Any] = {
    "/healthz": {
        "get": {
            "summary": "Liveness",
            "responses": {"200": answer("Serving.", obj({"status": STRING}))},
        }
    },
    "/readyz": {
        "get": {
            "summary": "Readiness: Redis answers",
            "responses": {
                "200": answer("Ready.", obj({"status": STRING})),
                **problems(503),
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "responses": {"200": answer("The OpenAPI document.", JSON_OBJECT)},
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics: this process's, and the fleet's gauges",
            "description": "With TRACKER_METRICS_TOKEN set, only for a bearer of it.",
            "responses": {
                "200": {
                    "description": "The Prometheus text format.",
                    "content": {"text/plain": {"schema": STRING}},
                },
                **problems(401),
            },
        }
    },
}
