"""What the API answers with, as pydantic models: the component schemas of the OpenAPI
document (`tracker.api.openapi`) are generated from them, and schemathesis checks every answer
against them (tests/test_openapi.py), so the views (`tracker.api.views`) and the document
cannot drift apart. They describe; the views build the bodies."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, WithJsonSchema
from pydantic.json_schema import models_json_schema

from tracker.core.records import (
    OPERATIONAL_EVENTS,
    VIDEO_EVENTS,
    DeliveryState,
    EventType,
    SubscriptionState,
    TaskState,
)
from tracker.errors import StorageErrorCode

REF_TEMPLATE = "#/components/schemas/{model}"


def _enum(*values: str) -> WithJsonSchema:
    return WithJsonSchema({"enum": list(values)})


Time = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
TaskStateName = Annotated[str, _enum(*(s.value for s in TaskState))]
DeliveryStateName = Annotated[str, _enum(*(s.value for s in DeliveryState))]
EventTypeName = Annotated[str, _enum(*(e.value for e in EventType))]
CircuitName = Annotated[str, _enum("closed", "open", "half_open")]
MASKED_HEADERS = {
    "type": "object",
    "additionalProperties": {"const": "********"},
    "description": "the headers sent with each webhook, their values masked",
}


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details; `type` is stable per kind of error."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


class OperationalWebhook(BaseModel):
    id: str
    callback_url: str
    events: list[Annotated[str, _enum(*(e.value for e in OPERATIONAL_EVENTS))]]
    created_at: Time


class Subscription(BaseModel):
    id: str
    task_id: str
    callback_url: str | None = Field(
        description="null: no webhooks; the events go to the client's feed only"
    )
    metadata: dict[str, Any]
    events: list[Annotated[str, _enum(*(e.value for e in VIDEO_EVENTS))]]
    state: Annotated[str, _enum(*(s.value for s in SubscriptionState))]
    created_at: Time
    headers: Annotated[dict[str, str], WithJsonSchema(MASKED_HEADERS)] = Field(default_factory=dict)
    keep_videos: bool = False


class Error(BaseModel):
    code: str
    message: str | None


class Result(BaseModel):
    video_url: str | None
    original_video_url: str | None
    enhanced_prompt: str | None
    model: str | None
    error: Error | None


class TaskSummary(BaseModel):
    task_id: str
    state: TaskStateName
    upstream_status: str | None
    polls: Annotated[int, Field(ge=0)]
    registered_at: Time
    updated_at: Time
    result: Result | None


class TaskList(BaseModel):
    tasks: list[TaskSummary]
    next_cursor: str | None


class AttemptRequest(BaseModel):
    url: str
    headers: dict[str, Any] | None


class AttemptAnswer(BaseModel):
    headers: list[list[str]]
    body: str


class Timings(BaseModel):
    resolve_ms: float | None
    connect_ms: float | None
    first_byte_ms: float | None
    total_ms: float


class Attempt(BaseModel):
    at: Time
    round: int = Field(description="the delivery's redeliver round")
    status_code: int | None
    error: str | None = Field(description="the error's class when no answer")
    latency_ms: float
    request: AttemptRequest | None
    answer: AttemptAnswer | None = Field(
        description="the receiver's headers (32 at most) and the first 4 KiB of its body, as text"
    )
    timings: Timings


class Delivery(BaseModel):
    id: str = Field(description="the webhook-id, the same on every attempt")
    type: EventTypeName
    state: DeliveryStateName
    round: int
    attempts: list[Attempt]


class Window(BaseModel):
    attempts: int
    failed: int
    success_rate: float | None
    latency_ms: float | None


class Hour(BaseModel):
    start: Time
    delivered: int
    failed: int


class Destination(BaseModel):
    origin: str
    state: Annotated[str, _enum("healthy", "failing", "open", "disabled")]
    disabled_at: Time | None
    circuit: CircuitName
    failures_in_a_row: int
    failing_since: Time | None
    last_error: str | None = Field(description="a status, or an error's class")
    last_error_at: Time | None
    last_success_at: Time | None
    last_hour: Window
    last_day: Window
    hours: list[Hour]


class CircuitOfDestination(BaseModel):
    origin: str
    circuit: CircuitName
    failures: int
    retry_at: Time | None


class FeedHeaders(BaseModel):
    webhook_id: str = Field(alias="webhook-id")
    webhook_timestamp: str = Field(alias="webhook-timestamp")
    webhook_signature: str = Field(alias="webhook-signature")


class FeedEvent(BaseModel):
    cursor: str = Field(description="its place in the feed; later events are greater")
    id: str = Field(description="the webhook-id its webhooks carry")
    type: EventTypeName
    task_id: str
    subscription_id: str
    seq: int = Field(
        description="the task's poll count when the event was made: orders one task's events"
    )
    created_at: Time
    body: str = Field(description="the webhook's body, byte for byte, as text")
    headers: FeedHeaders = Field(
        description="Standard Webhooks headers signing `body` now with the client's secret: "
        "POST `body` with them and it is the webhook"
    )


class FeedPage(BaseModel):
    data: list[FeedEvent]
    next_cursor: str = Field(description="pass as `after` for the next page")
    has_more: bool


class OutputError(BaseModel):
    code: Annotated[str, _enum(*(c.value for c in StorageErrorCode))]
    message: str


class Output(BaseModel):
    """One video's copy in object storage: where it is, its size, sha256, content type and a
    link (`stored`), or why it was not copied (`error`)"""

    name: Annotated[str, _enum("video", "original")]
    source_url: str
    stored: bool
    location: str | None = None
    size: Annotated[int, Field(ge=0)] | None = None
    sha256: str | None = None
    content_type: str | None = None
    url: str | None = None
    url_expires_at: Time | None = None
    error: OutputError | None = None


class Copies(BaseModel):
    state: Annotated[str, _enum("copying", "stored", "removing")]
    deadline_at: Time
    remove_at: Time | None
    outputs: list[Output]


class ClientStorage(BaseModel):
    url: str | None
    access_key_id: str | None = Field(description="its first 4 characters")
    secret_access_key: str | None = Field(description="never shown")
    keep_by_default: bool | None
    operator_storage: bool
    keeps_videos: bool


class TaskSubscription(Subscription):
    """A subscription of the caller's to the task, with its deliveries and the health of its
    callback's destination."""

    deliveries: list[Delivery]
    destination: CircuitOfDestination | None


class Task(TaskSummary):
    storage: Copies | None
    created_at: Time
    deadline_at: Time
    next_poll_at: Time | None
    upstream: dict[str, Any] | None
    subscriptions: list[TaskSubscription]


ANSWERS: tuple[type[BaseModel], ...] = (
    Problem, OperationalWebhook, Subscription, Error, Result, TaskSummary, TaskList, Attempt,
    Delivery, Window, Destination, CircuitOfDestination, FeedEvent, FeedPage, Output, Copies,
    ClientStorage, Task,
)  # fmt: skip


def component_schemas() -> dict[str, Any]:
    """The JSON Schema of every answer model (and of the models they nest), keyed by name,
    each referring to the others as `#/components/schemas/<name>`."""
    _, top = models_json_schema(
        [(model, "validation") for model in ANSWERS], ref_template=REF_TEMPLATE
    )
    schemas: dict[str, Any] = top["$defs"]
    return schemas
