"""Whole round trips: the API, a real worker process, the simulator and a receiver."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.support import Trip, auth, client_records, create_client, wait_for
from tracker.devtools.scenarios import UNSAFE_PROMPT, Fault, Scenario
from tracker.settings import Settings
from tracker.store import keys

pytestmark = [pytest.mark.slow, pytest.mark.cluster, pytest.mark.usefixtures("worker")]


def test_a_completed_task_yields_one_signed_video_completed(trip: Trip) -> None:
    task = trip.script(scenario=Scenario.SUCCESS, duration=0.4)
    sub = trip.register(task.task_id, metadata={"order": 7, "nested": {"k": [1, 2]}})
    view = trip.settled(task.task_id)
    hit, event = trip.only_webhook()
    assert hit.headers["content-type"] == "application/json"
    assert event["type"] == "video.completed"
    data = event["data"]
    assert data["task_id"] == task.task_id
    assert data["status"] == "completed"
    assert data["video_url"].endswith("-4k.mp4")
    assert data["original_video_url"].endswith("-clip.mp4")
    assert data["enhanced_prompt"] == "A simulated, enhanced prompt."
    assert data["model"] == "veo3.1-fast"
    assert data["error"] is None
    assert data["metadata"] == {"order": 7, "nested": {"k": [1, 2]}}
    assert data["subscription_id"] == sub["id"]
    assert data["upstream"]["status"] == "completed"
    assert view["state"] == "completed"
    delivery = view["subscriptions"][0]["deliveries"][0]
    assert delivery["id"] == hit.headers["webhook-id"]
    assert delivery["state"] == "delivered"
    assert [a["status_code"] for a in delivery["attempts"]] == [204]
    assert view["polls"] == trip.simulator.requests(task.task_id)


def test_a_failed_task_yields_video_failed_with_the_upstream_text(trip: Trip) -> None:
    _, _, event = trip.round_trip(scenario=Scenario.FAIL_GENERATION, duration=0.2)
    assert event["type"] == "video.failed"
    assert event["data"]["status"] == "video_generation_failed"
    assert event["data"]["error"] == {"code": "upstream_failed", "message": UNSAFE_PROMPT}
    assert event["data"]["video_url"] is None


def test_the_docs_example_ends_as_completed_not_failed(trip: Trip) -> None:
    _, _, event = trip.round_trip(scenario=Scenario.DOC_EXAMPLE, duration=0.2)
    assert event["type"] == "video.completed"
    assert event["data"]["video_url"] == (
        "https://pro.filesystem.site/cdn/20260206/1b50395bad4c6c7bc22e6ada144951.mp4"
    )
    assert event["data"]["error"] is None


def test_a_receiver_failing_twice_gets_the_same_webhook_id_on_the_third_attempt(
    trip: Trip,
) -> None:
    trip.receiver.script(trip.path, 500, 500)
    _, view, _ = trip.round_trip(duration=0.1)
    hits = trip.hits()
    assert [h.answered for h in hits] == [500, 500, 204]
    assert len({h.headers["webhook-id"] for h in hits}) == 1
    assert len({h.body for h in hits}) == 1
    for hit in hits:
        Webhook(trip.client["webhook_secret"]).verify(hit.body, hit.headers)
    attempts = view["subscriptions"][0]["deliveries"][0]["attempts"]
    assert [a["status_code"] for a in attempts] == [500, 500, 204]
    assert all(a["latency_ms"] >= 0 for a in attempts)


def test_a_redirect_is_not_followed_and_counts_as_a_failure(trip: Trip) -> None:
    trip.receiver.script(trip.path, 302)
    _, view, _ = trip.round_trip(duration=0.1)
    attempts = view["subscriptions"][0]["deliveries"][0]["attempts"]
    assert [a["status_code"] for a in attempts] == [302, 204]


def test_a_receiver_that_never_accepts_ends_dead_after_the_schedule(
    trip: Trip, settings: Settings
) -> None:
    trip.receiver.script(trip.path, *[503] * 10)
    task = trip.script(duration=0.1)
    trip.register(task.task_id)
    delivery = trip.settled(task.task_id)["subscriptions"][0]["deliveries"][0]
    assert delivery["state"] == "dead"
    assert len(delivery["attempts"]) == len(settings.delivery_schedule) + 1
    assert len(trip.hits()) == len(settings.delivery_schedule) + 1


def test_410_disables_the_subscription(trip: Trip) -> None:
    trip.receiver.script(trip.path, 410)
    task = trip.script(duration=0.1)
    trip.register(task.task_id)
    subscription = trip.settled(task.task_id)["subscriptions"][0]
    assert subscription["state"] == "disabled"
    assert subscription["deliveries"][0]["state"] == "gone"
    assert len(trip.hits()) == 1


def test_a_429_storm_and_500s_delay_the_task_but_never_fail_it(trip: Trip) -> None:
    faults = [Fault.RATE_LIMITED, Fault.RATE_LIMITED_EMPTY, Fault.RATE_LIMITED_NEW_API,
              Fault.RATE_LIMITED_RETRY_AFTER, Fault.SERVER_ERROR, Fault.SERVER_ERROR,
              Fault.BROKEN_JSON, Fault.SLOW, Fault.RATE_LIMITED, Fault.SERVER_ERROR]  # fmt: skip
    task, view, event = trip.round_trip(duration=0.1, faults=faults)
    assert event["type"] == "video.completed"
    assert view["polls"] == trip.simulator.requests(task.task_id) == len(faults) + 1


def test_an_unknown_id_ends_with_a_clear_error_code(trip: Trip, settings: Settings) -> None:
    task_id = f"veo3.1-fast:1770350082-{uuid.uuid4().hex[:10]}"  # never created upstream
    trip.register(task_id)
    view = trip.settled(task_id)
    _, event = trip.only_webhook()
    assert event["type"] == "video.failed"
    assert event["data"]["error"]["code"] == "upstream_unknown_task"
    assert view["polls"] == settings.rejection_limit


def test_a_401_upstream_ends_with_upstream_unauthorized(trip: Trip) -> None:
    _, _, event = trip.round_trip(scenario=Scenario.UNAUTHORIZED)
    assert event["data"]["error"]["code"] == "upstream_unauthorized"


def test_a_task_past_its_deadline_yields_video_timed_out(
    trip: Trip, settings: Settings, start_api: Callable[[Settings], httpx.Client]
) -> None:
    short = start_api(dataclasses.replace(settings, poll_deadline=0.6))
    trip = dataclasses.replace(trip, api=short)
    _, _, event = trip.round_trip(scenario=Scenario.NEVER_ENDS)
    assert event["type"] == "video.timed_out"
    assert event["data"]["status"] == "video_generating"
    assert event["data"]["error"]["code"] == "deadline_exceeded"


def test_a_deleted_task_is_polled_no_more(trip: Trip, redis_url: str) -> None:
    task = trip.script(scenario=Scenario.NEVER_ENDS)
    trip.register(task.task_id)
    wait_for(lambda: trip.simulator.requests(task.task_id) >= 2, 10, "two polls")
    deleted = trip.api.delete(f"/v1/tasks/{task.task_id}", headers=auth(trip.client))
    assert deleted.status_code == 204
    at_delete = trip.simulator.requests(task.task_id)
    with client_records(redis_url, trip.client["id"]) as (conn, space):
        assert conn.zscore(space.DUE_TASKS, task.task_id) is None  # never claimed again
    # A marker task polled twice after the delete: any poll in flight then has ended too.
    marker = trip.script(scenario=Scenario.NEVER_ENDS)
    trip.register(marker.task_id, suffix="-marker")
    wait_for(lambda: trip.simulator.requests(marker.task_id) >= 2, 10, "two marker polls")
    assert trip.simulator.requests(task.task_id) <= at_delete + 1  # at most the poll in flight
    assert trip.view(task.task_id)["state"] == "cancelled"
    assert trip.hits() == []


def test_two_subscriptions_share_one_poller(
    trip: Trip, redis_url: str, settings: Settings, start_api: Callable[[Settings], httpx.Client]
) -> None:
    # Another client on the same task: allowed where the operator shares tasks. One of the
    # same partition (on the cluster): each partition polls its own record of a shared task
    # (tests/test_partitions.py).
    api = start_api(dataclasses.replace(settings, shared_tasks=True))
    trip = dataclasses.replace(trip, api=api)
    count = settings.partitions
    same = next(
        found for n in range(60)
        if keys.partition_of((found := create_client(redis_url, f"other{n}"))["id"], count)
        == keys.partition_of(trip.client["id"], count)
    )  # fmt: skip
    other = dataclasses.replace(trip, client=same, path=trip.path + "-other")
    task = trip.script(duration=0.5)
    trip.register(task.task_id)
    other.register(task.task_id)
    view = trip.settled(task.task_id)
    theirs_view = other.settled(task.task_id)
    # Each client sees its own subscription only, though both are on the one task.
    assert [s["callback_url"] for s in view["subscriptions"]] == [trip.receiver.url + trip.path]
    assert [s["callback_url"] for s in theirs_view["subscriptions"]] == [
        other.receiver.url + other.path
    ]
    mine, _ = trip.only_webhook()
    theirs, _ = other.only_webhook()
    assert mine.headers["webhook-id"] != theirs.headers["webhook-id"]
    assert view["polls"] == trip.simulator.requests(task.task_id)


def test_registering_on_an_ended_task_delivers_at_once(trip: Trip) -> None:
    task, _, _ = trip.round_trip(duration=0.1)
    polls = trip.simulator.requests(task.task_id)
    trip.register(task.task_id, suffix="-late")
    wait_for(lambda: trip.receiver.accepted(trip.path + "-late"), 10, "the late webhook")
    _, event = trip.only_webhook("-late")
    assert event["type"] == "video.completed"
    assert trip.simulator.requests(task.task_id) == polls  # no new poll for a task that ended
