"""What the API accepts: the registration body, query parameters, and the body reader."""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from starlette.requests import Request

from tracker.core import jsontext
from tracker.core.numerals import whole_number
from tracker.core.records import OPERATIONAL_EVENTS, VIDEO_EVENTS, EventType, TaskState
from tracker.core.upstream import MAX_TASK_ID_LENGTH, TASK_ID_PATTERN
from tracker.core.upstream_keys import FINGERPRINT_PATTERN
from tracker.errors import (
    InvalidRequest,
    PayloadTooLarge,
    RequestTimeout,
    ValidationFailed,
)
from tracker.net.guard import MAX_CALLBACK_URL_LENGTH

MAX_BODY_BYTES = 64 * 1024
MAX_METADATA_BYTES = 16 * 1024
MAX_METADATA_DEPTH = 8
# Nesting a whole body may have: the metadata's limit, with room for the body around it.
MAX_BODY_DEPTH = MAX_METADATA_DEPTH + 2
MAX_PAGE = 100
# A first sieve with a readable message; `check_callback_url` has the last word.
CALLBACK_URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#\s]+"

TaskId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_TASK_ID_LENGTH, pattern=TASK_ID_PATTERN),
]


def bounded_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """`metadata` within its own limits (the whole body passed `jsontext.check` already)."""
    jsontext.check(metadata, max_depth=MAX_METADATA_DEPTH, where="metadata")
    if len(jsontext.dumps(metadata)) > MAX_METADATA_BYTES:
        raise ValueError(f"metadata is larger than {MAX_METADATA_BYTES} bytes as JSON")
    return metadata


CallbackUrl = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=MAX_CALLBACK_URL_LENGTH, pattern=CALLBACK_URL_PATTERN
    ),
]


def only(events: list[EventType], allowed: tuple[EventType, ...], whose: str) -> list[EventType]:
    """`events`, if each is one `whose` may ask for."""
    refused = [str(e) for e in events if e not in allowed]
    if refused:
        raise ValueError(f"{whose} takes {', '.join(allowed)}; not {', '.join(refused)}")
    return events


class Subscribing(BaseModel):
    """The fields every registration has: where its events go, and how its task is polled."""

    # None: no webhooks, the client follows its event feed (`/v1/events`, its stream, `wait`).
    callback_url: CallbackUrl | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    events: list[EventType] | None = Field(default=None, min_length=1, max_length=4)
    # The fingerprint of the caller's own QuickRouter key to poll with (default: its only key,
    # else the deployment's shared one where the operator allows it).
    upstream_key: Annotated[str, StringConstraints(pattern=FINGERPRINT_PATTERN)] | None = None
    # Whether `video.completed` waits for copies of the videos in object storage and carries
    # them (None: the client's default, `PUT /v1/storage`).
    keep_videos: bool | None = None
    # Headers sent with each of its webhooks (`tracker.core.headers`: checked by the route,
    # sealed at rest, shown masked).
    headers: dict[str, str] | None = None

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        return bounded_metadata(metadata)

    @field_validator("events")
    @classmethod
    def _video_events(cls, events: list[EventType] | None) -> list[EventType] | None:
        return None if events is None else only(events, VIDEO_EVENTS, "a task's subscription")


class TaskRegistration(Subscribing):
    """The body of `POST /v1/tasks`."""

    model_config = ConfigDict(extra="forbid")

    task_id: TaskId


class VideoCreation(Subscribing):
    """The body of `POST /v1/videos`: QuickRouter's create body (passed on as it is, whatever
    the model takes) and the tracker's own fields (`TRACKER_FIELDS`), which are not."""

    model_config = ConfigDict(extra="allow")

    model: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    prompt: Annotated[str, StringConstraints(min_length=1)]


# What `POST /v1/videos` keeps for itself; everything else goes to QuickRouter.
TRACKER_FIELDS = frozenset({"callback_url", "metadata", "events", "upstream_key", "keep_videos"})


async def read_json(request: Request, time_limit: float) -> Any:
    """The request's JSON body, refusing oversized, slow, malformed or unsafe ones.

    Unsafe is what could not be stored and sent on as JSON: NaN or Infinity (400, not JSON),
    text that is not valid Unicode or nesting past `MAX_BODY_DEPTH` (422).
    """
    declared = whole_number(request.headers.get("content-length", ""))
    if declared is not None and declared > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"body is larger than {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(time_limit):
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise PayloadTooLarge(f"body is larger than {MAX_BODY_BYTES} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"the body did not arrive within {time_limit:g} s") from None
    try:
        body = jsontext.loads(b"".join(chunks))
    except jsontext.UnsafeJson as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}") from None
    except (ValueError, RecursionError):
        raise InvalidRequest("body is not valid JSON") from None
    try:
        jsontext.check(body, max_depth=MAX_BODY_DEPTH)
    except jsontext.UnsafeJson as exc:
        raise ValidationFailed(str(exc)) from None
    return body


def state_param(raw: str | None) -> TaskState | None:
    if raw is None:
        return None
    try:
        return TaskState(raw)
    except ValueError:
        raise ValidationFailed(
            f"state must be one of {', '.join(s.value for s in TaskState)}"
        ) from None


def limit_param(raw: str | None) -> int:
    if raw is None:
        return 20
    limit = whole_number(raw)
    if limit is None or not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be an integer from 1 to {MAX_PAGE}")
    return limit


def cursor(before: float) -> str:
    """The opaque cursor of a page that continues before `before`."""
    return base64.urlsafe_b64encode(repr(before).encode()).decode().rstrip("=")


def cursor_param(raw: str | None) -> float | None:
    if not raw:
        return None
    try:
        decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        value = float(decoded)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ValidationFailed("cursor is not one this API gave") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValidationFailed("cursor is not one this API gave")
    return value


class OperationalWebhook(BaseModel):
    """The body of `PUT /v1/operational-webhook`: where the client's operational events go."""

    model_config = ConfigDict(extra="forbid")

    callback_url: CallbackUrl
    events: list[EventType] = Field(
        default_factory=lambda: list(OPERATIONAL_EVENTS), min_length=1, max_length=2
    )

    @field_validator("events")
    @classmethod
    def _operational(cls, events: list[EventType]) -> list[EventType]:
        return only(events, OPERATIONAL_EVENTS, "the operational webhook")
