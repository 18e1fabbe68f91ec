"""The tracker's errors: each has a stable code that clients and operators can match on."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class TrackerError(Exception):
    """Base of every error the tracker raises on purpose."""

    code: ClassVar[str] = "tracker_error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class ConfigurationError(TrackerError):
    """A setting or command-line option that cannot work."""

    code = "configuration_error"
    title = "Invalid configuration"


class InvalidRequest(TrackerError):
    """The request body is not JSON, or not of the right shape."""

    code = "invalid_request"
    status = 400
    title = "Invalid request"


class ValidationFailed(TrackerError):
    """The body is JSON of the right shape but a value is refused."""

    code = "validation_failed"
    status = 422
    title = "Validation failed"


class Unauthorized(TrackerError):
    """No API key, or one that no client holds."""

    code = "unauthorized"
    status = 401
    title = "Unauthorized"


class NotFound(TrackerError):
    """No such task for this client (another client's task looks the same)."""

    code = "not_found"
    status = 404
    title = "Not found"


class Unavailable(TrackerError):
    """Redis cannot be reached: nothing was stored."""

    code = "unavailable"
    status = 503
    title = "Service unavailable"


class TaskErrorCode(StrEnum):
    """Codes carried in a webhook's `data.error.code`."""

    UPSTREAM_FAILED = "upstream_failed"
    UPSTREAM_UNAUTHORIZED = "upstream_unauthorized"
    UPSTREAM_UNKNOWN_TASK = "upstream_unknown_task"
    DEADLINE_EXCEEDED = "deadline_exceeded"
