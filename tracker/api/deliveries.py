"""One delivery of the caller's: `GET /v1/deliveries/{id}` with every attempt as it went, and
`POST /v1/deliveries/{id}/resend`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tracker.api import views
from tracker.api.auth import authenticate
from tracker.api.describe import SECURED, STRING, answer, obj, path_param, problems, ref
from tracker.core.records import Delivery, DeliveryState, Subscription
from tracker.errors import NotFound, RateLimited
from tracker.settings import Settings
from tracker.store import Shard
from tracker.store.ratelimit import admit_redelivery


async def owned(store: Shard, client_id: str, delivery_id: str) -> tuple[Delivery, Subscription]:
    """The client's delivery with its subscription; another client's answers 404, as one that
    does not exist."""
    found = await store.deliveries.get(delivery_id)
    sub = await store.tasks.subscription(found.subscription_id) if found else None
    if found is None or sub is None or sub.client_id != client_id:
        raise NotFound(f"no delivery {delivery_id!r} for this client")
    return found, sub


async def delivery(request: Request) -> Response:
    client = await authenticate(request)
    store: Shard = request.app.state.store.shard(client.id)
    delivery_id = request.path_params["delivery_id"]
    found, sub = await owned(store, client.id, delivery_id)
    attempts = await store.deliveries.attempts(delivery_id)
    return JSONResponse(
        {
            **views.delivery_json(found, attempts),
            "task_id": found.task_id,
            "subscription_id": found.subscription_id,
            "callback_url": sub.callback_url,
        }
    )


async def resend(request: Request) -> Response:
    """`POST /v1/deliveries/{id}/resend`: one delivery again, a new round (the redeliver quota
    counts it)."""
    client = await authenticate(request)
    store: Shard = request.app.state.store.shard(client.id)
    settings: Settings = request.app.state.settings
    delivery_id = request.path_params["delivery_id"]
    found, sub = await owned(store, client.id, delivery_id)
    now = store.clock.now()
    await admitted(store, client.id, now, settings.redeliveries_per_minute)
    # An operational event's delivery (its subscription has no task) has no task records.
    tracking_id = (
        found.source or await store.tasks.tracked_as(client.id, found.task_id)
        if sub.task_id
        else ""
    )
    if tracking_id is None:
        raise NotFound(f"the task of delivery {delivery_id!r} is no longer kept")
    await store.deliveries.resend(found, tracking_id, now)
    return JSONResponse({"delivery": delivery_id, "was": str(found.state)}, status_code=202)


async def admitted(store: Shard, client_id: str, now: float, per_minute: int) -> None:
    """Count one call against the client's redeliver quota; 429 past it."""
    if not await admit_redelivery(store.redis, store.keys, client_id, now, per_minute):
        raise RateLimited(
            f"more than {per_minute} redeliver calls in one minute",
            retry_after=60 - int(now % 60),
        )


# These routes as the OpenAPI document describes them (`tracker.api.openapi` gathers every
# module's).
PATHS: dict[str, Any] = {
    "/v1/deliveries/{delivery_id}": {
        "parameters": [path_param("delivery_id")],
        "get": {
            "summary": "One of the caller's deliveries, with every attempt as it went",
            "security": SECURED,
            "responses": {
                "200": answer(
                    "The delivery.",
                    {
                        "allOf": [
                            ref("Delivery"),
                            obj(
                                {
                                    "task_id": STRING,
                                    "subscription_id": STRING,
                                    "callback_url": STRING,
                                }
                            ),
                        ]
                    },
                ),
                **problems(401, 404, 503),
            },
        },
    },
    "/v1/deliveries/{delivery_id}/resend": {
        "parameters": [path_param("delivery_id")],
        "post": {
            "summary": "Send one of the caller's deliveries again (a new round)",
            "security": SECURED,
            "responses": {
                "202": answer(
                    "Due at once.",
                    obj(
                        {
                            "delivery": STRING,
                            "was": {"enum": [s.value for s in DeliveryState]},
                        }
                    ),
                ),
                **problems(401, 404, 429, 503),
            },
        },
    },
}
