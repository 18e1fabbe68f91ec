"""The tracker's records and their states, as plain frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tracker.core.ids import tracking_id


class TaskState(StrEnum):
    TRACKING = "tracking"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in _FINAL_TASK_STATES


_FINAL_TASK_STATES = frozenset({TaskState.COMPLETED, TaskState.FAILED, TaskState.TIMED_OUT})


class EventType(StrEnum):
    COMPLETED = "video.completed"
    FAILED = "video.failed"
    TIMED_OUT = "video.timed_out"
    STATUS_CHANGED = "video.status_changed"
    # Operational events: about a client's deliveries and destinations rather than a task
    # (`tracker.core.operations`).
    DELIVERY_EXHAUSTED = "delivery.exhausted"
    DESTINATION_DISABLED = "destination.disabled"


FINAL_EVENTS = (EventType.COMPLETED, EventType.FAILED, EventType.TIMED_OUT)
# What a task's subscription may ask for; the operational ones go to the client's
# operational subscription (`PUT /v1/operational-webhook`).
VIDEO_EVENTS = (*FINAL_EVENTS, EventType.STATUS_CHANGED)
OPERATIONAL_EVENTS = (EventType.DELIVERY_EXHAUSTED, EventType.DESTINATION_DISABLED)

EVENT_FOR_STATE = {
    TaskState.COMPLETED: EventType.COMPLETED,
    TaskState.FAILED: EventType.FAILED,
    TaskState.TIMED_OUT: EventType.TIMED_OUT,
}


class SubscriptionState(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"  # the receiver answered 410 Gone
    CANCELLED = "cancelled"  # the client deleted the task


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"  # the schedule ran out; can be sent again by hand
    GONE = "gone"  # the receiver answered 410: its subscription is disabled
    SKIPPED = "skipped"  # its subscription was disabled or cancelled first


@dataclass(frozen=True)
class Client:
    id: str
    name: str
    secret: str
    created_at: float
    revoked: bool = False
    # The secret before the last rotation, still signing until `previous_until`.
    previous_secret: str | None = None
    previous_until: float = 0.0

    def signing_secrets(self, now: float) -> list[str]:
        """The secrets that sign a webhook at `now`: the new one, and the old in the overlap."""
        if self.previous_secret is not None and now < self.previous_until:
            return [self.secret, self.previous_secret]
        return [self.secret]


@dataclass(frozen=True)
class Result:
    """How a task ended: what every final event carries."""

    state: TaskState
    status: str | None
    video_url: str | None = None
    original_video_url: str | None = None
    enhanced_prompt: str | None = None
    model: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    dropped_urls: tuple[str, ...] = ()  # result URLs the upstream gave that were not http(s)


@dataclass(frozen=True)
class Task:
    task_id: str
    state: TaskState
    created_at: float
    updated_at: float
    deadline_at: float
    next_poll_at: float
    polls: int = 0
    rejections: int = 0
    upstream_status: str | None = None
    upstream: dict[str, Any] | None = None  # its last answer (kept whole once final)
    result: Result | None = None
    origin: float | None = None  # when the upstream created it
    subscription_ids: tuple[str, ...] = ()
    history: tuple[tuple[str, float], ...] = ()  # each status seen, and when it began
    # Whose QuickRouter key polls it: the fingerprint of a client's own key and that client
    # (empty: the deployment's shared key), and the client that first registered it.
    upstream_key: str = ""
    key_holder: str = ""
    owner: str = ""

    @property
    def tracking_id(self) -> str:
        """The id it is tracked under (`tracker.core.ids.tracking_id`)."""
        return tracking_id(self.task_id, self.upstream_key)


@dataclass(frozen=True)
class Subscription:
    id: str
    task_id: str
    client_id: str
    callback_url: str
    metadata: dict[str, Any]
    events: tuple[EventType, ...]
    state: SubscriptionState
    created_at: float
    # Whether its `video.completed` waits for copies of the videos in object storage
    # (`tracker.core.storage`) and carries where they are.
    keep_videos: bool = False
    # Headers its client has sent with each webhook (`tracker.core.headers`): their names, and
    # the name -> value JSON sealed with the vault.
    header_names: tuple[str, ...] = ()
    sealed_headers: str = ""


@dataclass(frozen=True)
class Attempt:
    """One POST of a delivery, as its log keeps it (docs/api.md, attempt records)."""

    at: float
    status_code: int | None
    error: str | None  # the error's class when no answer came
    latency_ms: float
    round: int = 0  # the delivery's redeliver round it belongs to
    url: str = ""
    # The request's headers, and the answer's (bounded: `tracker.core.delivery`) with the
    # first 4 KiB of its body; empty when TRACKER_RECORD_ANSWERS is off, or for no answer.
    request_headers: dict[str, str] | None = None
    answer_headers: list[list[str]] | None = None
    answer_body: str | None = None
    # Milliseconds from the start to the name resolved, the connection made (TLS included),
    # the answer's first byte; None where there was none (a reused connection resolves and
    # connects nothing).
    resolve_ms: float | None = None
    connect_ms: float | None = None
    first_byte_ms: float | None = None


@dataclass(frozen=True)
class Delivery:
    id: str  # also the `webhook-id`: the same on every attempt
    subscription_id: str
    task_id: str
    event_type: EventType
    body: bytes  # the exact bytes signed and sent, fixed at creation
    state: DeliveryState
    attempts: int
    next_attempt_at: float
    created_at: float
    origin: str = ""  # `scheme://host:port` of its callback (`tracker.core.origins`)
    client_id: str = ""  # whose: with `origin`, it names the slots and breaker it goes through
    round: int = 0  # how many times it was redelivered: an attempt of an older round is stale
    # A final event's body is kept only while the delivery is pending (its attempts send it);
    # once it ends, the body is built again, byte for byte, from what the ended task keeps
    # anyway (its final answer and result), its subscription and the time the event was made:
    # `source` is the task's tracking id, empty for a body kept for good.
    source: str = ""
    made_at: float = 0.0
