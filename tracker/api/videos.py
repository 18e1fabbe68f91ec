"""`POST /v1/videos`: create a video at QuickRouter and track it, in one call.

The tracker calls QuickRouter's create with the caller's key and registers the id it returns
in the same request, so no crash between "created" and "tracked" leaves a billed video that
nobody tracks, as long as the caller retries with the same `Idempotency-Key`
(`tracker.store.idempotency` says how each retry is answered).
"""

from __future__ import annotations

import asyncio
import math
import secrets
from typing import Any

from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import Response

from tracker.api import idempotency, schemas, views
from tracker.api.auth import authenticate
from tracker.api.describe import (
    IDEMPOTENCY_KEY,
    SECURED,
    STRING,
    VIDEO_CREATION,
    answer,
    body,
    obj,
    problems,
    ref,
)
from tracker.api.problems import problem, validated
from tracker.api.tasks import admit, checked_callback, polling_and_keeping, subscribe
from tracker.core import headers as subscription_headers
from tracker.core import jsontext
from tracker.core.limits import Limits, live_tasks_refused
from tracker.core.records import Client
from tracker.core.upstream import Created, CreateRefused
from tracker.errors import (
    IdempotencyConflict,
    LimitReached,
    RateLimited,
    TrackerError,
    UpstreamRefused,
    UpstreamUnavailable,
)
from tracker.net.client import NotSent, Upstream, create_video
from tracker.settings import Settings
from tracker.store import Shard
from tracker.store.idempotency import Intent
from tracker.store.ratelimit import UpstreamBucket

# A request with an Idempotency-Key that started this long ago and never recorded QuickRouter's
# answer will not record it any more: past the upstream time-out, plus room for the rest.
STALE_AFTER = 10.0
# The longest a create waits for a token of its QuickRouter key's bucket before a 429.
BUCKET_WAIT = 5.0


class VideoCollection(HTTPEndpoint):
    """`POST /v1/videos`: QuickRouter's create body plus `callback_url`, `metadata`, `events`
    and `upstream_key`; 201 with the task id and the subscription."""

    async def post(self, request: Request) -> Response:
        client = await authenticate(request)
        settings: Settings = request.app.state.settings
        store: Shard = request.app.state.store.shard(client.id)
        body = await schemas.read_json(request, settings.request_body_timeout)
        creation = validated(schemas.VideoCreation, body)
        callback_url = await checked_callback(request, creation.callback_url)
        name, keep = await polling_and_keeping(
            request, client.id, creation.upstream_key, creation.keep_videos
        )
        sent_headers = subscription_headers.checked(creation.headers or {})
        passed_on = {k: v for k, v in body.items() if k not in schemas.TRACKER_FIELDS}
        call = Call(request, client, creation, callback_url, name, passed_on, keep, sent_headers)
        idempotency_key = idempotency.key_of(request)
        if idempotency_key is None:
            return await call.create()
        call.idempotency_key = idempotency_key
        fingerprint = idempotency.fingerprint("POST /v1/videos", body)
        earlier = await store.idempotency.begin(
            client.id, idempotency_key, fingerprint, store.clock.now(), call.token
        )
        if earlier is None:
            return await call.create()
        return await call.resume(earlier, fingerprint)


class Call:
    """One create-and-track request, from the upstream create to the recorded answer."""

    def __init__(
        self,
        request: Request,
        client: Client,
        creation: schemas.VideoCreation,
        callback_url: str,
        upstream_key: str,
        passed_on: dict[str, Any],
        keep_videos: bool,
        headers: dict[str, str],
    ) -> None:
        self.request = request
        self.keep_videos = keep_videos
        self.headers = headers
        self.passed_on = passed_on
        self.client = client
        self.creation = creation
        self.callback_url = callback_url
        self.upstream_key = upstream_key
        self.idempotency_key: str | None = None
        # What holds the key's record: a request resuming another's ('' then) writes freely.
        self.token = secrets.token_hex(8)
        self.store: Shard = request.app.state.store.shard(client.id)
        self.settings: Settings = request.app.state.settings

    async def create(self) -> Response:
        key = await self.store.clients.quickrouter_key(
            self.client.id, self.upstream_key, self.settings.quickrouter_api_key
        )
        try:
            await self.meter(key)
        except TrackerError:
            await self.free_key()  # nothing was created
            raise
        http: Upstream = self.request.app.state.http
        body = jsontext.dumps(self.passed_on)
        try:
            outcome = await create_video(http, self.settings, body, key=key)
        except NotSent:
            await self.free_key()
            raise UpstreamUnavailable(
                "QuickRouter could not be reached; nothing was created: try again"
            ) from None
        if isinstance(outcome, CreateRefused):
            return await self.answer_error(UpstreamRefused(outcome.message, outcome.status))
        if outcome is None:
            # Kept as `started`: a retry with this key learns the outcome is unknown.
            raise UpstreamUnavailable(
                "QuickRouter's answer to the create was lost or had no task id: the video may "
                "or may not have been created. List your tasks before creating another."
            )
        return await self.register(outcome)

    async def free_key(self) -> None:
        """Nothing was created: the Idempotency-Key may be used again."""
        if self.idempotency_key is not None:
            await self.store.idempotency.release(self.client.id, self.idempotency_key, self.token)

    async def meter(self, key: str | None) -> None:
        """Count the create before it reaches QuickRouter, where it is billed: the client's
        registration rate (429) and tracked-task limit (422) are checked first, so a refused
        registration never leaves a video nobody tracks; then a token of the QuickRouter key's
        fleet-wide bucket (`TRACKER_UPSTREAM_RATE`), which the key's polls take from too,
        waiting up to BUCKET_WAIT seconds for one (else 429)."""
        await admit(self.request, self.client.id)
        limits = Limits.of(self.settings)
        if await self.store.tasks.live_count(self.client.id) >= limits.live_tasks_per_client:
            raise LimitReached(live_tasks_refused(limits))
        bucket = UpstreamBucket(
            self.store.redis, key, self.settings.upstream_rate, self.settings.upstream_burst
        )
        waited = 0.0
        while (wait := await bucket.take()) > 0:
            if waited + wait > BUCKET_WAIT:
                raise RateLimited(
                    "the QuickRouter key's request rate is spent for now",
                    retry_after=max(1, math.ceil(wait)),
                )
            await asyncio.sleep(wait)
            waited += wait

    async def register(self, created: Created) -> Response:
        if self.idempotency_key is not None:
            await self.store.idempotency.created(
                self.client.id, self.idempotency_key, self.token, created.task_id
            )
        try:
            result = await subscribe(
                self.request,
                self.client.id,
                created.task_id,
                callback_url=self.callback_url,
                metadata=self.creation.metadata,
                events=self.creation.events,
                upstream_key=self.upstream_key,
                keep_videos=self.keep_videos,
                headers=self.headers,
                admitted=True,  # counted before the create (`meter`)
            )
        except TrackerError as exc:
            # The video exists upstream: say which, so it can be registered by hand (or this
            # request sent again with its Idempotency-Key, which registers it).
            exc.extensions["task_id"] = created.task_id
            raise
        answer = {
            "task_id": created.task_id,
            "subscription": views.subscription_json(result.subscription),
        }
        return await self.answer(201, answer, {"location": f"/v1/tasks/{created.task_id}"})

    async def resume(self, earlier: Intent, fingerprint: str) -> Response:
        """Answer a request whose Idempotency-Key an earlier request took."""
        replayed = idempotency.replay(earlier, fingerprint)
        if replayed is not None:
            return replayed
        age = self.store.clock.now() - earlier.started_at
        if age < self.settings.upstream_timeout + STALE_AFTER:
            raise idempotency.still_running()
        if earlier.state == "created" and earlier.task_id:
            self.token = ""  # the first request died after the create: this one finishes it
            return await self.register(Created(earlier.task_id))
        raise IdempotencyConflict(
            "the request with this Idempotency-Key stopped before QuickRouter's answer was "
            "recorded: the video may or may not have been created. List your tasks "
            "(GET /v1/tasks) to see whether it was, or send the request with a new key to "
            "create another video."
        )

    async def answer(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> Response:
        text = jsontext.dumps(body).decode()
        location = (headers or {}).get("location", "")
        if self.idempotency_key is not None:
            await self.store.idempotency.done(
                self.client.id, self.idempotency_key, self.token, status, text, location
            )
        return Response(text, status_code=status, media_type="application/json", headers=headers)

    async def answer_error(self, error: TrackerError) -> Response:
        """A problem that is final for this key (nothing was created): given again on retry."""
        response = problem(error)
        if self.idempotency_key is not None:
            await self.store.idempotency.done(
                self.client.id, self.idempotency_key, self.token, error.status,
                bytes(response.body).decode(),
            )  # fmt: skip
        return response


# These routes as the OpenAPI document describes them (`tracker.api.openapi` gathers every
# module's).
PATHS: dict[str, Any] = {
    "/v1/videos": {
        "post": {
            "summary": "Create a video at QuickRouter and track it, in one call",
            "security": SECURED,
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": body(VIDEO_CREATION),
            "responses": {
                "201": answer(
                    "Created upstream and registered.",
                    obj({"task_id": STRING, "subscription": ref("Subscription")}),
                ),
                "4XX": {
                    "description": "QuickRouter refused the create: its status and "
                    "message (`upstream_refused`); or one of the tracker's own refusals.",
                    "content": {"application/problem+json": {"schema": ref("Problem")}},
                },
                **problems(409, 502, 503),
            },
        },
    },
}
