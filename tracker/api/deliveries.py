"""`GET /v1/deliveries/{id}`: one delivery of the caller's, with every attempt as it went."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tracker.api import views
from tracker.api.auth import authenticate
from tracker.errors import NotFound
from tracker.store import Store


async def delivery(request: Request) -> Response:
    client = await authenticate(request)
    store: Store = request.app.state.store
    delivery_id = request.path_params["delivery_id"]
    found = await store.deliveries.get(delivery_id)
    sub = await store.tasks.subscription(found.subscription_id) if found else None
    if found is None or sub is None or sub.client_id != client.id:
        # Another client's delivery answers as one that does not exist.
        raise NotFound(f"no delivery {delivery_id!r} for this client")
    attempts = await store.deliveries.attempts(delivery_id)
    return JSONResponse(
        {
            **views.delivery_json(found, attempts),
            "task_id": found.task_id,
            "subscription_id": found.subscription_id,
            "callback_url": sub.callback_url,
        }
    )
