"""`/v1/upstream-keys`: a client's own QuickRouter keys. A key goes in once and never comes
back out: answers carry only its fingerprint, and Redis holds it sealed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tracker.api import schemas
from tracker.api.auth import authenticate
from tracker.api.describe import (
    FINGERPRINT,
    SECURED,
    STRING,
    answer,
    body,
    closed,
    obj,
    path_param,
    problems,
)
from tracker.api.problems import validated
from tracker.core import upstream_keys
from tracker.errors import NotFound
from tracker.settings import Settings
from tracker.store import Shard


class UpstreamKeyBody(BaseModel):
    """The body of `POST /v1/upstream-keys`."""

    model_config = ConfigDict(extra="forbid")

    key: str


class UpstreamKeyCollection(HTTPEndpoint):
    """`POST` adds one of the caller's keys; `GET` lists their fingerprints."""

    async def post(self, request: Request) -> Response:
        client = await authenticate(request)
        settings: Settings = request.app.state.settings
        store: Shard = request.app.state.store.shard(client.id)
        body = validated(
            UpstreamKeyBody, await schemas.read_json(request, settings.request_body_timeout)
        )
        key = upstream_keys.checked_key(body.key)
        name = await store.clients.add_upstream_key(client.id, key)
        return JSONResponse({"fingerprint": name}, status_code=201)

    async def get(self, request: Request) -> Response:
        client = await authenticate(request)
        store: Shard = request.app.state.store.shard(client.id)
        names = await store.clients.upstream_key_names(client.id)
        return JSONResponse({"keys": [{"fingerprint": name} for name in names]})


class UpstreamKeyResource(HTTPEndpoint):
    """`DELETE /v1/upstream-keys/{fingerprint}` forgets one of the caller's keys."""

    async def delete(self, request: Request) -> Response:
        client = await authenticate(request)
        store: Shard = request.app.state.store.shard(client.id)
        name = request.path_params["fingerprint"]
        if not await store.clients.remove_upstream_key(client.id, name):
            raise NotFound(f"no upstream key {name!r} for this client")
        return Response(status_code=204)


# These routes as the OpenAPI document describes them (`tracker.api.openapi` gathers every
# module's).
PATHS: dict[str, Any] = {
    "/v1/upstream-keys": {
        "post": {
            "summary": "Keep one of the caller's own QuickRouter keys (sealed at rest)",
            "security": SECURED,
            "requestBody": body(closed(obj({"key": {**STRING, "minLength": 1}}))),
            "responses": {
                "201": answer("Kept; only its fingerprint is ever shown.", FINGERPRINT),
                **problems(400, 401, 413, 422, 503),
            },
        },
        "get": {
            "summary": "The fingerprints of the caller's own QuickRouter keys",
            "security": SECURED,
            "responses": {
                "200": answer(
                    "Fingerprints only.",
                    obj({"keys": {"type": "array", "items": FINGERPRINT}}),
                ),
                **problems(401, 503),
            },
        },
    },
    "/v1/upstream-keys/{fingerprint}": {
        "parameters": [path_param("fingerprint")],
        "delete": {
            "summary": "Forget one of the caller's keys (its tasks' polls then fail)",
            "security": SECURED,
            "responses": {
                "204": {"description": "Forgotten."},
                **problems(401, 404, 503),
            },
        },
    },
}
