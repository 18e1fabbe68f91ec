"""The tracker's errors: each has a stable code that clients and operators can match on."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class TrackerError(Exception):
    """Base of every error the tracker raises on purpose."""

    code: ClassVar[str] = "tracker_error"
    status: int = 500
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions
        self.headers: dict[str, str] = {}


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


class MethodNotAllowed(TrackerError):
    code = "method_not_allowed"
    status = 405
    title = "Method not allowed"


class PayloadTooLarge(TrackerError):
    code = "payload_too_large"
    status = 413
    title = "Payload too large"


class RequestTimeout(TrackerError):
    """The request body did not arrive in time; the connection is closed."""

    code = "request_timeout"
    status = 408
    title = "Request timeout"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.headers["connection"] = "close"


class LimitReached(TrackerError):
    """A new record would pass one of the client's limits; nothing was stored."""

    code = "limit_reached"
    status = 422
    title = "Limit reached"


class NotFinal(TrackerError):
    """The task has not ended, so it has no final event to send again."""

    code = "task_not_final"
    status = 409
    title = "Task not final"


class NothingToRedeliver(TrackerError):
    """None of the caller's subscriptions to the task has a callback: its events are in the
    feed, and a redeliver would send nothing (and spends none of the caller's quota)."""

    code = "nothing_to_redeliver"
    status = 409
    title = "Nothing to redeliver"


class RateLimited(TrackerError):
    """Too many calls from one client; `Retry-After` says when to come back."""

    code = "rate_limited"
    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.headers["retry-after"] = str(retry_after)


class Unavailable(TrackerError):
    """Redis cannot be reached: nothing was stored."""

    code = "unavailable"
    status = 503
    title = "Service unavailable"


class DataLost(Unavailable):
    """Redis no longer holds the tracker's epoch: it lost its data (`tracker.store.identity`).
    Nothing is served or worked on until it is back or the operator starts over."""

    code = "data_lost"
    title = "Redis lost the tracker's data"


class LayoutOutdated(Unavailable):
    """Redis holds records in the key layout before hash tags (`tracker.store.layout`):
    nothing is served or worked on until the operator migrates them."""

    code = "layout_outdated"
    title = "Redis holds records in an earlier key layout"


class PartitionsChanged(Unavailable):
    """TRACKER_PARTITIONS differs from the count the records were written with: each client's
    records would be looked for in another partition than theirs (`tracker.store.keys`)."""

    code = "partitions_changed"
    title = "TRACKER_PARTITIONS differs from the records' partition count"


class UpstreamRefused(TrackerError):
    """QuickRouter refused a create: its status and message, passed on."""

    code = "upstream_refused"
    title = "QuickRouter refused the request"

    def __init__(self, detail: str, status: int) -> None:
        super().__init__(detail)
        self.status = status


class UpstreamUnavailable(TrackerError):
    """QuickRouter could not be reached, or gave no usable answer: nothing was registered."""

    code = "upstream_unavailable"
    status = 502
    title = "QuickRouter unavailable"


class IdempotencyKeyReused(TrackerError):
    """An Idempotency-Key sent again with another request body."""

    code = "idempotency_key_reused"
    status = 422
    title = "Idempotency-Key reused"


class IdempotencyConflict(TrackerError):
    """An Idempotency-Key that cannot be answered now: in use by a request still running, or
    left by a request whose outcome is unknown."""

    code = "idempotency_conflict"
    status = 409
    title = "Idempotency-Key conflict"


class TaskErrorCode(StrEnum):
    """Codes carried in a webhook's `data.error.code`."""

    UPSTREAM_FAILED = "upstream_failed"
    UPSTREAM_UNAUTHORIZED = "upstream_unauthorized"
    UPSTREAM_UNKNOWN_TASK = "upstream_unknown_task"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    # The event went out without metadata and upstream answer, which could not be encoded.
    EVENT_UNENCODABLE = "event_unencodable"


class StorageErrorCode(StrEnum):
    """Why an output was not copied (`data.outputs[].error.code` of a `video.completed`)."""

    SOURCE_GONE = "storage_source_gone"  # the upstream link answered 401, 403, 404 or 410
    SOURCE_FAILED = "storage_source_failed"  # other answers or no answer, until the deadline
    SOURCE_REFUSED = "storage_source_refused"  # a private address, or redirected to one
    TOO_LARGE = "storage_too_large"  # past TRACKER_STORAGE_MAX_BYTES, announced or read
    SOURCE_CUT = "storage_source_cut"  # the download ended short of its announced length
    LENGTH_MISMATCH = "storage_length_mismatch"  # more bytes than its Content-Length said
    STORE_REFUSED = "storage_store_refused"  # the store said no (credentials, no bucket)
    STORE_UNREACHABLE = "storage_store_unreachable"  # not reached before the deadline
    DEADLINE = "storage_deadline"  # not copied within TRACKER_STORAGE_DEADLINE
    NO_STORE = "storage_unconfigured"  # the client's storage was removed meanwhile
