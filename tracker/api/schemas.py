"""What the API accepts: the registration body, query parameters, and the body reader."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from starlette.requests import Request

from tracker.core.records import EventType, TaskState
from tracker.errors import InvalidRequest, PayloadTooLarge, ValidationFailed
from tracker.net.guard import MAX_CALLBACK_URL_LENGTH

MAX_BODY_BYTES = 64 * 1024
MAX_METADATA_BYTES = 16 * 1024
MAX_METADATA_DEPTH = 8
MAX_PAGE = 100
TASK_ID_PATTERN = r"^[A-Za-z0-9._:~+=@-]+$"
MAX_TASK_ID_LENGTH = 200
# A first sieve with a readable message; `check_callback_url` has the last word.
CALLBACK_URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#\s]+"

TaskId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_TASK_ID_LENGTH, pattern=TASK_ID_PATTERN),
]


class TaskRegistration(BaseModel):
    """The body of `POST /v1/tasks`."""

    model_config = ConfigDict(extra="forbid")

    task_id: TaskId
    callback_url: Annotated[
        str,
        StringConstraints(
            min_length=1, max_length=MAX_CALLBACK_URL_LENGTH, pattern=CALLBACK_URL_PATTERN
        ),
    ]
    metadata: dict[str, Any] = Field(default_factory=dict)
    events: list[EventType] | None = Field(default=None, min_length=1, max_length=4)

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(metadata)) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata is larger than {MAX_METADATA_BYTES} bytes as JSON")
        if _depth(metadata) > MAX_METADATA_DEPTH:
            raise ValueError(f"metadata nests deeper than {MAX_METADATA_DEPTH} levels")
        return metadata


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


async def read_json(request: Request) -> Any:
    """The request's JSON body, refusing oversized or malformed ones."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"body is larger than {MAX_BODY_BYTES} bytes")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"body is larger than {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidRequest("body is not valid JSON") from None


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
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise ValidationFailed(f"limit must be an integer from 1 to {MAX_PAGE}")
    return int(raw)


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
