"""Who is calling: the client that holds the request's bearer key."""

from __future__ import annotations

from starlette.requests import Request

from tracker.core.records import Client
from tracker.errors import Unauthorized
from tracker.store import Store


async def authenticate(request: Request) -> Client:
    """The calling client; 401 without a key, or with one no active client holds."""
    scheme, _, api_key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not api_key.strip():
        raise Unauthorized("send Authorization: Bearer <api key>")
    store: Store = request.app.state.store
    await store.identity.require()  # else every key would be "unknown": 503 instead
    client = await store.clients.for_key(api_key.strip())
    if client is None:
        raise Unauthorized("unknown or revoked API key")
    return client
