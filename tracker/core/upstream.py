"""What one answer of QuickRouter's `GET /v1/video/query` means.

`read_response` is a pure function from (status code, headers, body) to an outcome; a poll
(`workers/poll.py`) only carries the outcome to Redis. The rules are those of
`shared/upstream/UPSTREAM.md`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tracker.core import jsontext
from tracker.core.backoff import parse_retry_after

SUCCESS_STATUSES = frozenset({"completed", "success"})
FAILURE_STATUSES = frozenset(
    {"failed", "video_generation_failed", "video_upsampling_failed", "error"}
)
# Where the error text of a failed task is, in the order UPSTREAM.md gives.
_DETAIL_ERROR_FIELDS = ("video_generation_error", "error_message", "upsample_error")
_TOP_ERROR_FIELDS = ("error", "fail_reason", "message")
_DETAIL_URL_FIELDS = ("video_url", "upsample_video_url")
# Upstream answers larger than this are not read: "try later", and counted.
MAX_ANSWER_BYTES = 1024 * 1024
# Real answers nest a few levels; deeper is not an answer.
MAX_ANSWER_DEPTH = 32


class RejectReason(StrEnum):
    UNAUTHORIZED = "unauthorized"
    UNKNOWN_TASK = "unknown_task"


@dataclass(frozen=True)
class Running:
    """Still in progress upstream; `status` is the upstream's own word."""

    status: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Completed:
    status: str
    body: dict[str, Any]
    video_url: str | None
    original_video_url: str | None
    enhanced_prompt: str | None
    model: str | None
    dropped_urls: tuple[str, ...] = ()  # result URLs left out: not http(s)


@dataclass(frozen=True)
class Failed:
    status: str
    body: dict[str, Any]
    message: str


@dataclass(frozen=True)
class TryLater:
    """The call failed (429, 5xx, time-out, broken body): the task itself is unaffected."""

    reason: str
    retry_after: float | None = None


@dataclass(frozen=True)
class Rejected:
    """The key or the id is refused; retried a few times before the task fails."""

    reason: RejectReason
    message: str


Outcome = Running | Completed | Failed | TryLater | Rejected


def read_response(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    seen_running: bool = False,
    now: float | None = None,
) -> Outcome:
    """Interpret one answer of the query endpoint.

    `seen_running` says whether this task was ever seen in progress: an `error` status with no
    task detail, for a task never seen, is what QuickRouter answers for an id the key cannot
    see, so it is a rejection rather than a failure. `now` (Unix seconds) reads a
    `Retry-After` given as a date.
    """
    if status_code == 401 or status_code == 403:
        return Rejected(RejectReason.UNAUTHORIZED, f"upstream answered {status_code}")
    if status_code == 404:
        return Rejected(RejectReason.UNKNOWN_TASK, "upstream answered 404")
    if not 200 <= status_code < 300:
        return TryLater(f"upstream answered {status_code}", _retry_after(headers, now))
    try:
        parsed = jsontext.repaired(jsontext.loads(body), max_depth=MAX_ANSWER_DEPTH)
    except jsontext.UnsafeJson as exc:
        return TryLater(f"upstream body is unreadable ({exc})")
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return TryLater("upstream body is not JSON")
    if not isinstance(parsed, dict):
        return TryLater("upstream body is not a JSON object")
    raw_status = parsed.get("status")
    if not isinstance(raw_status, str) or not raw_status.strip():
        return TryLater("upstream body has no status")
    status = raw_status.strip().lower()
    detail = parsed.get("detail")
    detail = detail if isinstance(detail, dict) else {}

    if status in SUCCESS_STATUSES:
        return _completed(status, parsed, detail)
    if status in FAILURE_STATUSES:
        message = error_text(parsed) or f"upstream status {status}"
        if status == "error" and not detail and not seen_running:
            return Rejected(RejectReason.UNKNOWN_TASK, message)
        return Failed(status, parsed, message)
    return Running(status, parsed)


def _completed(status: str, body: dict[str, Any], detail: dict[str, Any]) -> Completed:
    body, detail, dropped = _without_unsafe_urls(body, detail)
    final = _text(body.get("video_url")) or _text(detail.get("upsample_video_url"))
    clip = _text(detail.get("video_url"))
    final = final or clip
    req = detail.get("req")
    model = _text(req.get("model")) if isinstance(req, dict) else None
    return Completed(
        status=status,
        body=body,
        video_url=final,
        original_video_url=clip if clip and clip != final else None,
        enhanced_prompt=_text(body.get("enhanced_prompt")) or _text(detail.get("enhanced_prompt")),
        model=model,
        dropped_urls=dropped,
    )


def is_web_url(value: object) -> bool:
    """Whether `value` is an http(s) URL: the only kind of result URL passed on."""
    if not isinstance(value, str):
        return False
    scheme, sep, rest = value.strip().partition("://")
    return bool(sep and rest) and scheme.lower() in {"http", "https"}


def _without_unsafe_urls(
    body: dict[str, Any], detail: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], tuple[str, ...]]:
    """The answer with result URLs that are not http(s) (`javascript:`, `file:`, …) set to
    null, and where they were, so the event can say what was left out."""
    dropped: list[str] = []
    body = dict(body)
    value = body.get("video_url")
    if value is not None and not is_web_url(value):
        body["video_url"] = None
        dropped.append("video_url")
    if detail:
        detail = dict(detail)
        for name in _DETAIL_URL_FIELDS:
            value = detail.get(name)
            if value is not None and not is_web_url(value):
                detail[name] = None
                dropped.append(f"detail.{name}")
        body["detail"] = detail
    return body, detail, tuple(dropped)


def summary(body: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level scalar fields of an answer (status, times, URLs): what is kept of a
    running task's last answer, a tenth of its size, where the whole final answer is kept."""
    return {
        name: value
        for name, value in body.items()
        if value is None
        or isinstance(value, bool | int | float)
        or (isinstance(value, str) and len(value) <= 512)
    }


def error_text(body: Mapping[str, Any]) -> str | None:
    """The first error message in the fields UPSTREAM.md lists, in its order."""
    detail = body.get("detail")
    if isinstance(detail, dict):
        for name in _DETAIL_ERROR_FIELDS:
            if text := _message(detail.get(name)):
                return text
    for name in _TOP_ERROR_FIELDS:
        if text := _message(body.get(name)):
            return text
    return None


def _message(value: object) -> str | None:
    if isinstance(value, dict):
        return _text(value.get("message")) or _text(value.get("code"))
    return _text(value)


def _text(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    return None


def _retry_after(headers: Mapping[str, str], now: float | None) -> float | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            return parse_retry_after(value, now)
    return None


# -- create ------------------------------------------------------------------------------------

# What a QuickRouter task id is made of (model prefix included), and how long it may be.
TASK_ID_PATTERN = r"^[A-Za-z0-9._:~+=@-]+$"
MAX_TASK_ID_LENGTH = 200
MAX_MESSAGE = 500


@dataclass(frozen=True)
class Created:
    """QuickRouter made the task: its id."""

    task_id: str


@dataclass(frozen=True)
class CreateRefused:
    """QuickRouter refused the create (nothing was made): its status and message."""

    status: int
    message: str


def read_create(status_code: int, body: bytes) -> Created | CreateRefused | None:
    """What an answer to `POST /v1/video/create` means; None when it cannot tell (a 2xx
    without a usable id, a 5xx): the task may or may not have been made."""
    try:
        parsed = jsontext.loads(body) if body else None
    except (ValueError, RecursionError):
        parsed = None
    fields = parsed if isinstance(parsed, dict) else {}
    if 200 <= status_code < 300:
        task_id = fields.get("id")
        if (
            isinstance(task_id, str)
            and len(task_id) <= MAX_TASK_ID_LENGTH
            and re.fullmatch(TASK_ID_PATTERN, task_id)
        ):
            return Created(task_id)
        return None
    if 400 <= status_code < 500:
        message = error_text(fields) or f"QuickRouter answered {status_code}"
        return CreateRefused(status_code, message[:MAX_MESSAGE])
    return None
