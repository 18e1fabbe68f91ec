"""`GET /v1/destinations`: the caller's callback origins, each with its state and how its
attempts went over the last hour and day (`tracker.core.destinations`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tracker.api.auth import authenticate
from tracker.api.deliveries import admitted
from tracker.api.describe import (
    SECURED,
    STRING,
    answer,
    body,
    closed,
    obj,
    path_param,
    problems,
    ref,
)
from tracker.api.problems import validated
from tracker.api.schemas import read_json
from tracker.core.origins import origin_of
from tracker.errors import NotFound, ValidationFailed
from tracker.settings import Settings
from tracker.store import Shard, recoveries


async def destinations_page(request: Request) -> Response:
    client = await authenticate(request)
    store: Shard = request.app.state.store.shard(client.id)
    now = store.clock.now()
    found = await store.origins.destinations(client.id, now)
    return JSONResponse({"destinations": [d.view(now) for d in found]})


MAX_RECOVERED = 1000  # deliveries one recover call sends again
RECOVERY_SCAN = 20_000  # of the client's tasks one recover call looks at, at most


class Recovery(BaseModel):
    """The body of `POST /v1/destinations/recover`."""

    model_config = ConfigDict(extra="forbid")

    origin: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    since: AwareDatetime
    until: AwareDatetime | None = None
    dry_run: bool = False


async def recover(request: Request) -> Response:
    """Send again every failed delivery (dead, gone, or pending after a refused attempt) to
    one of the caller's origins, made between `since` and `until` (default now): at most
    `MAX_RECOVERED` a call, as one call of the redeliver quota, the origin's circuit closed
    first. `dry_run` only counts them."""
    client = await authenticate(request)
    store: Shard = request.app.state.store.shard(client.id)
    settings: Settings = request.app.state.settings
    body = validated(Recovery, await read_json(request, settings.request_body_timeout))
    now = store.clock.now()
    since, until = body.since.timestamp(), body.until.timestamp() if body.until else now
    origin = checked_origin(body.origin)
    since = max(since, now - settings.retention)  # nothing older is kept
    if not since < until:
        raise ValidationFailed("since must come before until (and within TRACKER_RETENTION)")
    found, more = await recoveries.failed_to(
        store.redis,
        store.keys,
        client.id,
        origin,
        since,
        until,
        limit=MAX_RECOVERED,
        scan=RECOVERY_SCAN,
    )
    if body.dry_run:
        return JSONResponse({"found": len(found), "more": more})
    await admitted(store, client.id, now, settings.redeliveries_per_minute)
    await store.origins.close(client.id, origin)  # its owner says it is back
    for item in found:
        delivery = await store.deliveries.get(item.delivery_id)
        if delivery is not None:
            await store.deliveries.resend(delivery, item.tracking_id, now)
    ids = [item.delivery_id for item in found]
    recovery_id = await recoveries.keep(store.redis, store.keys, client.id, ids)
    return JSONResponse(
        {"recovery": recovery_id, "found": len(ids), "more": more, "deliveries": ids},
        status_code=202,
    )


async def recovery_progress(request: Request) -> Response:
    """`GET /v1/recoveries/{id}`: how a recovery's deliveries stand now, by state."""
    client = await authenticate(request)
    store: Shard = request.app.state.store.shard(client.id)
    recovery_id = request.path_params["recovery_id"]
    counts = await recoveries.progress(store.redis, store.keys, client.id, recovery_id)
    if counts is None:
        raise NotFound(f"no recovery {recovery_id!r} for this client (they are kept a day)")
    return JSONResponse({"recovery": recovery_id, "deliveries": counts})


class Enabling(BaseModel):
    """The body of `POST /v1/destinations/enable`."""

    model_config = ConfigDict(extra="forbid")

    origin: Annotated[str, StringConstraints(min_length=1, max_length=2048)]


async def enable(request: Request) -> Response:
    """`POST /v1/destinations/enable`: a destination disabled (or open) takes attempts again:
    its circuit closed, and what waits for it due at once (at most `MAX_RECOVERED` a call)."""
    client = await authenticate(request)
    store: Shard = request.app.state.store.shard(client.id)
    settings: Settings = request.app.state.settings
    body = validated(Enabling, await read_json(request, settings.request_body_timeout))
    origin = checked_origin(body.origin)
    now = store.clock.now()
    requeued, more = await store.enable_destination(
        client.id, origin, now, since=now - settings.retention, limit=MAX_RECOVERED,
        scan=RECOVERY_SCAN,
    )  # fmt: skip
    return JSONResponse({"origin": origin, "requeued": requeued, "more": more})


def checked_origin(given: str) -> str:
    """`given` as an origin as `/v1/destinations` gives it (any URL at it is taken to it)."""
    origin = origin_of(given)
    if not origin.startswith(("http://", "https://")) or origin.endswith("://:80"):
        raise ValidationFailed("origin must be an http(s) origin, as /v1/destinations gives it")
    return origin


# These routes as the OpenAPI document describes them (`tracker.api.openapi` gathers every
# module's).
PATHS: dict[str, Any] = {
    "/v1/destinations/recover": {
        "post": {
            "summary": "Send again every failed delivery to one of the caller's "
            "origins made within a time window",
            "security": SECURED,
            "requestBody": body(ref("Recovery")),
            "responses": {
                "200": answer(
                    "A dry run: how many there are.",
                    obj({"found": {"type": "integer"}, "more": {"type": "boolean"}}),
                ),
                "202": answer(
                    "Sent again (1,000 at most a call).",
                    obj(
                        {
                            "recovery": STRING,
                            "found": {"type": "integer"},
                            "more": {"type": "boolean"},
                            "deliveries": {"type": "array", "items": STRING},
                        }
                    ),
                ),
                **problems(400, 401, 413, 422, 429, 503),
            },
        },
    },
    "/v1/destinations/enable": {
        "post": {
            "summary": "A disabled (or open) destination takes attempts again; what "
            "waits for it is due at once",
            "security": SECURED,
            "requestBody": body(closed(obj({"origin": {**STRING, "minLength": 1}}))),
            "responses": {
                "200": answer(
                    "Enabled.",
                    obj(
                        {
                            "origin": STRING,
                            "requeued": {"type": "integer"},
                            "more": {"type": "boolean"},
                        }
                    ),
                ),
                **problems(400, 401, 413, 422, 503),
            },
        },
    },
    "/v1/recoveries/{recovery_id}": {
        "parameters": [path_param("recovery_id")],
        "get": {
            "summary": "How a recovery's deliveries stand now, by state",
            "security": SECURED,
            "responses": {
                "200": answer(
                    "Counts by state.",
                    obj(
                        {
                            "recovery": STRING,
                            "deliveries": {
                                "type": "object",
                                "additionalProperties": {"type": "integer"},
                            },
                        }
                    ),
                ),
                **problems(401, 404, 503),
            },
        },
    },
    "/v1/destinations": {
        "get": {
            "summary": "The caller's callback origins: each one's state, and how its "
            "attempts went over the last hour and day",
            "security": SECURED,
            "responses": {
                "200": answer(
                    "Its destinations, the most recently attempted first.",
                    obj({"destinations": {"type": "array", "items": ref("Destination")}}),
                ),
                **problems(401, 503),
            },
        },
    },
}
