"""`GET /v1/destinations`: the caller's callback origins, each with its state and how its
attempts went over the last hour and day (`tracker.core.destinations`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tracker.api.auth import authenticate
from tracker.core import destinations
from tracker.store import Store
from tracker.store.origins import destinations_of


async def destinations_page(request: Request) -> Response:
    client = await authenticate(request)
    store: Store = request.app.state.store
    now = store.clock.now()
    found = await destinations_of(store.redis, client.id, now)
    return JSONResponse(
        {
            "destinations": [
                destinations.view(d.origin, d.breaker.circuit, d.breaker.failures, d.figures, now)
                for d in found
            ]
        }
    )
