"""Which subscription gets which event, and the event's id and bytes: pure, without Redis."""

from __future__ import annotations

import json

from tracker.core.events import event_id, final_deliveries, status_deliveries
from tracker.core.records import (
    FINAL_EVENTS,
    DeliveryState,
    EventType,
    Result,
    Subscription,
    SubscriptionState,
    TaskState,
)

TASK = "veo3.1-fast:1770350082-fanout"


def sub(
    name: str, *events: EventType, state: SubscriptionState = SubscriptionState.ACTIVE
) -> Subscription:
    return Subscription(
        id=f"sub_{name}", task_id=TASK, client_id=f"cli_{name}", callback_url=f"https://{name}.test/",
        metadata={"who": name}, events=events or FINAL_EVENTS, state=state, created_at=1.0,
    )  # fmt: skip


SUBS = [
    sub("a"),
    sub("b", EventType.FAILED),
    sub("c", EventType.COMPLETED, EventType.STATUS_CHANGED),
    sub("d", state=SubscriptionState.CANCELLED),
    sub("e", EventType.STATUS_CHANGED, state=SubscriptionState.DISABLED),
]
DONE = Result(TaskState.COMPLETED, "completed", video_url="https://cdn.test/v.mp4")


def test_a_final_event_goes_to_each_active_subscription_that_asked_for_it() -> None:
    found = final_deliveries(DONE, {"status": "completed"}, SUBS, now=5.0)
    assert [d.subscription_id for d in found] == ["sub_a", "sub_c"]
    assert {d.event_type for d in found} == {EventType.COMPLETED}
    assert all(d.state is DeliveryState.PENDING and d.next_attempt_at == 5.0 for d in found)


def test_each_subscription_gets_its_own_metadata_and_id() -> None:
    a, c = final_deliveries(DONE, None, SUBS, now=5.0)
    assert json.loads(a.body)["data"]["metadata"] == {"who": "a"}
    assert json.loads(c.body)["data"]["metadata"] == {"who": "c"}
    assert a.id == event_id("sub_a", EventType.COMPLETED) != c.id


def test_a_failure_reaches_the_subscriptions_that_asked_for_failures() -> None:
    failed = Result(TaskState.FAILED, "failed", error_code="upstream_failed", error_message="x")
    found = final_deliveries(failed, None, SUBS, now=5.0)
    assert [d.subscription_id for d in found] == ["sub_a", "sub_b"]


def test_status_changes_go_only_where_asked_with_an_id_per_change() -> None:
    first = status_deliveries(TASK, "video_generating", 3, None, SUBS, now=5.0)
    second = status_deliveries(TASK, "video_upsampling", 4, None, SUBS, now=6.0)
    assert [d.subscription_id for d in first] == ["sub_c"]
    assert first[0].id != second[0].id
    data = json.loads(first[0].body)["data"]
    assert (data["state"], data["status"], data["model"]) == (
        "tracking", "video_generating", "veo3.1-fast",
    )  # fmt: skip


def test_the_same_outcome_always_has_the_same_ids_and_bytes() -> None:
    once = final_deliveries(DONE, {"k": "v"}, SUBS, now=5.0)
    again = final_deliveries(DONE, {"k": "v"}, SUBS, now=5.0)
    assert [(d.id, d.body) for d in once] == [(d.id, d.body) for d in again]
