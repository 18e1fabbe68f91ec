"""Object storage in the API: whether a registration keeps copies, a client's own bucket
(`/v1/storage`), a task's copies with fresh links, and the signed links to files kept in the
operator's folder (`/v1/files/…`)."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from tracker.api.auth import authenticate
from tracker.api.describe import SECURED, STRING, answer, body, path_param, problems, query, ref
from tracker.api.problems import validated
from tracker.api.schemas import read_json
from tracker.core import storage
from tracker.core.numerals import whole_number
from tracker.errors import NotFound, Unauthorized, ValidationFailed
from tracker.net.guard import check_callback_url
from tracker.net.objects import Stores, file_signature
from tracker.settings import Settings
from tracker.store import Shard
from tracker.store.buckets import ClientStorage


class StorageSettings(BaseModel):
    """The body of `PUT /v1/storage`: the client's own S3 bucket and whether its
    registrations keep copies unless they say."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None
    access_key_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    secret_access_key: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    keep_by_default: bool | None = None


def keeps_videos(settings: Settings, own: ClientStorage, asked: bool | None) -> bool:
    """Whether a registration keeps copies: as it asks, else the client's default (keep where
    a store is set: its own `own`, or the operator's). Asking for copies with no store
    anywhere is a 422, not a silent no."""
    if asked is False:
        return False
    operator_store = bool(settings.storage_url)
    if asked and not own.has_store(operator_store):
        raise ValidationFailed(
            "keep_videos: no object storage is set for this client (PUT /v1/storage) "
            "or the deployment (TRACKER_STORAGE_URL)"
        )
    return bool(asked) or own.keeps_by_default(operator_store)


async def checked_storage(given: StorageSettings, *, allow_private: bool) -> ClientStorage:
    """The client's storage as given, once its URL, credentials and endpoint pass (the API's
    `PUT /v1/storage` and `qrtracker clients set-storage`)."""
    if given.url is None:
        return ClientStorage(keep_by_default=given.keep_by_default)
    location = storage.parse_location(given.url)
    if location.scheme != "s3":
        raise ValidationFailed("a client's own storage is an s3:// bucket")
    if not given.access_key_id or not given.secret_access_key:
        # Without its own credentials, the S3 client would take the deployment's.
        raise ValidationFailed("access_key_id and secret_access_key are required with url")
    if location.endpoint:
        try:
            await check_callback_url(location.endpoint, allow_private=allow_private)
        except ValidationFailed as exc:
            raise ValidationFailed(exc.detail.replace("callback_url", "endpoint")) from None
    return ClientStorage(
        url=given.url,
        access_key_id=given.access_key_id,
        secret_access_key=given.secret_access_key,
        keep_by_default=given.keep_by_default,
    )


class StorageResource(HTTPEndpoint):
    """`GET`, `PUT` and `DELETE /v1/storage`: the caller's own object storage."""

    async def get(self, request: Request) -> Response:
        client = await authenticate(request)
        store: Shard = request.app.state.store.shard(client.id)
        return JSONResponse(_shown(request, await store.buckets.get(client.id)))

    async def put(self, request: Request) -> Response:
        client = await authenticate(request)
        settings: Settings = request.app.state.settings
        store: Shard = request.app.state.store.shard(client.id)
        body = await read_json(request, settings.request_body_timeout)
        kept = await checked_storage(
            validated(StorageSettings, body), allow_private=settings.allow_private_callbacks
        )
        await store.buckets.put(client.id, kept)
        return JSONResponse(_shown(request, kept))

    async def delete(self, request: Request) -> Response:
        client = await authenticate(request)
        store: Shard = request.app.state.store.shard(client.id)
        if not await store.buckets.remove(client.id):
            raise NotFound("this client has no storage of its own")
        return Response(status_code=204)


def _shown(request: Request, own: ClientStorage) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    return {
        **own.masked,
        "operator_storage": settings.storage_url is not None,
        "keeps_videos": own.keeps_by_default(bool(settings.storage_url)),
    }


async def stored_file(request: Request) -> Response:
    """`GET /v1/files/{key}?expires=…&signature=…`: a file of the operator's storage folder,
    to whoever holds a link the tracker signed, until it expires."""
    stores: Stores = request.app.state.stores
    folder = stores.folder()
    key = request.path_params["key"]
    expires = whole_number(request.query_params.get("expires", ""))
    given = request.query_params.get("signature", "")
    if folder is None:
        raise NotFound("no files are kept here")
    now = request.app.state.store.clock.now()
    if (
        expires is None
        or expires < now
        or not hmac.compare_digest(given, file_signature(folder.link_key, key, expires))
    ):
        raise Unauthorized("the link is not valid, or it has expired")
    path = folder.path(key)
    if not path.is_file():
        raise NotFound("the file is no longer kept")
    return FileResponse(path, media_type="application/octet-stream")


# These routes as the OpenAPI document describes them (`tracker.api.openapi` gathers every
# module's).
PATHS: dict[str, Any] = {
    "/v1/storage": {
        "get": {
            "summary": "The caller's own object storage, masked",
            "security": SECURED,
            "responses": {
                "200": answer("Its storage.", ref("ClientStorage")),
                **problems(401, 503),
            },
        },
        "put": {
            "summary": "Send the caller's copies of its videos to its own S3 bucket",
            "security": SECURED,
            "requestBody": body(ref("StorageSettings")),
            "responses": {
                "200": answer("Kept (the secret sealed, never shown).", ref("ClientStorage")),
                **problems(400, 401, 413, 422, 503),
            },
        },
        "delete": {
            "summary": "Forget the caller's own storage",
            "security": SECURED,
            "responses": {
                "204": {"description": "Forgotten."},
                **problems(401, 404, 503),
            },
        },
    },
    "/v1/files/{key}": {
        "parameters": [
            path_param("key"),
            query("expires", STRING, "Unix seconds until which the link works"),
            query("signature", STRING, "the tracker's signature of the link"),
        ],
        "get": {
            "summary": "A copy kept in the deployment's storage folder, by signed link",
            "responses": {
                "200": {
                    "description": "The file.",
                    "content": {"application/octet-stream": {"schema": STRING}},
                },
                **problems(401, 404),
            },
        },
    },
}
