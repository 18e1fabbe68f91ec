"""`GET /v1/destinations`: the caller's callback origins, each with its state and how its
attempts went over the last hour and day (`tracker.core.destinations`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tracker.api.auth import authenticate
from tracker.api.deliveries import admitted
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
