"""`GET`, `PUT` and `DELETE /v1/operational-webhook`: where a client's operational events
(`delivery.exhausted`, `destination.disabled`) go as webhooks, besides its feed."""

from __future__ import annotations

from typing import Any

from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tracker.api.auth import authenticate
from tracker.api.describe import SECURED, answer, body, problems, ref
from tracker.api.problems import validated
from tracker.api.schemas import OperationalWebhook, read_json
from tracker.core.events import iso_time
from tracker.core.records import Subscription
from tracker.errors import NotFound
from tracker.net.guard import check_callback_url
from tracker.settings import Settings
from tracker.store import Shard

NONE_SET = "this client has no operational webhook"


class OperationalWebhookResource(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        client = await authenticate(request)
        store: Shard = request.app.state.store.shard(client.id)
        sub = await store.operations.subscription(client.id)
        if sub is None:
            raise NotFound(NONE_SET)
        return JSONResponse(shown(sub))

    async def put(self, request: Request) -> Response:
        """Set it (replacing the one before: what waits for that one is not sent)."""
        client = await authenticate(request)
        settings: Settings = request.app.state.settings
        store: Shard = request.app.state.store.shard(client.id)
        given = validated(
            OperationalWebhook, await read_json(request, settings.request_body_timeout)
        )
        url = await check_callback_url(
            given.callback_url, allow_private=settings.allow_private_callbacks
        )
        sub = await store.operations.subscribe(
            client.id, url, list(dict.fromkeys(given.events)), store.clock.now()
        )
        return JSONResponse(shown(sub))

    async def delete(self, request: Request) -> Response:
        client = await authenticate(request)
        store: Shard = request.app.state.store.shard(client.id)
        if not await store.operations.unsubscribe(client.id):
            raise NotFound(NONE_SET)
        return Response(status_code=204)


def shown(sub: Subscription) -> dict[str, Any]:
    return {
        "id": sub.id,
        "callback_url": sub.callback_url,
        "events": [str(e) for e in sub.events],
        "created_at": iso_time(sub.created_at),
    }


# These routes as the OpenAPI document describes them (`tracker.api.openapi` gathers every
# module's).
PATHS: dict[str, Any] = {
    "/v1/operational-webhook": {
        "get": {
            "summary": "Where the caller's operational events go as webhooks",
            "security": SECURED,
            "responses": {
                "200": answer("Its operational webhook.", ref("OperationalWebhook")),
                **problems(401, 404, 503),
            },
        },
        "put": {
            "summary": "Send delivery.exhausted and destination.disabled to a callback",
            "security": SECURED,
            "requestBody": body(ref("OperationalWebhookSettings")),
            "responses": {
                "200": answer("Set (replacing any before).", ref("OperationalWebhook")),
                **problems(400, 401, 413, 422, 503),
            },
        },
        "delete": {
            "summary": "Stop sending the caller's operational events as webhooks",
            "security": SECURED,
            "responses": {
                "204": {"description": "Stopped."},
                **problems(401, 404, 503),
            },
        },
    },
}
