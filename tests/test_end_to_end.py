"""Whole round trips: the API, a real worker process, the simulator and a receiver."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

import httpx
import pytest
import redis
from standardwebhooks.webhooks import Webhook

from tests.conftest import WorkerProcess, auth, create_client, wait_for
from tests.flows import only_webhook, register, settled, task_view
from tracker import keys
from tracker.receiver import Receiver
from tracker.settings import Settings
from tracker.simulator import UNSAFE_PROMPT, Fault, Scenario, Simulator

pytestmark = pytest.mark.slow


def test_a_completed_task_yields_one_signed_video_completed(
    api: httpx.Client,
    client: dict[str, str],
    worker: WorkerProcess,
    simulator: Simulator,
    receiver: Receiver,
    hook: str,
) -> None:
    task = simulator.script(scenario=Scenario.SUCCESS, duration=0.4)
    sub = register(
        api,
        client,
        task.task_id,
        receiver.url + hook,
        metadata={"order": 7, "nested": {"k": [1, 2]}},
    )
    view = settled(api, client, task.task_id)
    hit, event = only_webhook(receiver, hook, client["webhook_secret"])
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
    assert view["polls"] == simulator.requests(task.task_id)


def test_a_failed_task_yields_video_failed_with_the_upstream_text(
    api: httpx.Client,
    client: dict[str, str],
    worker: WorkerProcess,
    simulator: Simulator,
    receiver: Receiver,
    hook: str,
) -> None:
    task = simulator.script(scenario=Scenario.FAIL_GENERATION, duration=0.2)
    register(api, client, task.task_id, receiver.url + hook)
    settled(api, client, task.task_id)
    _, event = only_webhook(receiver, hook, client["webhook_secret"])
    assert event["type"] == "video.failed"
    assert event["data"]["status"] == "video_generation_failed"
    assert event["data"]["error"] == {"code": "upstream_failed", "message": UNSAFE_PROMPT}
    assert event["data"]["video_url"] is None


def test_the_docs_example_ends_as_completed_not_failed(
    api: httpx.Client,
    client: dict[str, str],
    worker: WorkerProcess,
    simulator: Simulator,
    receiver: Receiver,
    hook: str,
) -> None:
    task = simulator.script(scenario=Scenario.DOC_EXAMPLE, duration=0.2)
    register(api, client, task.task_id, receiver.url + hook)
    settled(api, client, task.task_id)
    _, event = only_webhook(receiver, hook, client["webhook_secret"])
    assert event["type"] == "video.completed"
    assert event["data"]["video_url"] == (
        "https://pro.filesystem.site/cdn/20260206/1b50395bad4c6c7bc22e6ada144951.mp4"
    )
    assert event["data"]["error"] is None


def test_a_receiver_failing_twice_gets_the_same_webhook_id_on_the_third_attempt(
    api: httpx.Client,
    client: dict[str, str],
    worker: WorkerProcess,
    simulator: Simulator,
    receiver: Receiver,
    hook: str,
) -> None:
    receiver.script(hook, 500, 500)
    task = simulator.script(duration=0.1)
    register(api, client, task.task_id, receiver.url + hook)
    view = settled(api, client, task.task_id)
    hits = receiver.at(hook)
    assert [h.answered for h in hits] == [500, 500, 204]
    assert len({h.headers["webhook-id"] for h in hits}) == 1
    assert len({h.body for h in hits}) == 1
    for hit in hits:
        Webhook(client["webhook_secret"]).verify(hit.body, hit.headers)
    attempts = view["subscriptions"][0]["deliveries"][0]["attempts"]
    assert [a["status_code"] for a in attempts] == [500, 500, 204]
    assert all(a["latency_ms"] >= 0 for a in attempts)


def test_a_redirect_is_not_followed_and_counts_as_a_failure(
    api: httpx.Client,
    client: dict[str, str],
    worker: WorkerProcess,
    simulator: Simulator,
    receiver: Receiver,
    hook: str,
) -> None:
    receiver.script(hook, 302)
    task = simulator.script(duration=0.1)
    register(api, client, task.task_id, receiver.url + hook)
    view = settled(api, client, task.task_id)
    attempts = view["subscriptions"][0]["deliveries"][0]["attempts"]
    assert [a["status_code"] for a in attempts] == [302, 204]


def test_a_receiver_that_never_accepts_ends_dead_after_the_schedule(
    api: httpx.Client,
    client: dict[str, str],
    worker: WorkerProcess,
    simulator: Simulator,
    receiver: Receiver,
    hook: str,
    settings: Settings,
) -> None:
    receiver.script(hook, *[503] * 10)
    task = simulator.script(duration=0.1)
    register(api, client, task.task_id, receiver.url + hook)
    view = settled(api, client, task.task_id)
    delivery = view["subscriptions"][0]["deliveries"][0]
    assert delivery["state"] == "dead"
    assert len(delivery["attempts"]) == len(settings.delivery_schedule) + 1
    assert len(receiver.at(hook)) == len(settings.delivery_schedule) + 1


def test_410_disables_the_subscription(
    api: httpx.Client,
    client: dict[str, str],
    worker: WorkerProcess,
    simulator: Simulator,
    receiver: Receiver,
    hook: str,
) -> None:
    receiver.script(hook, 410)
    task = simulator.script(duration=0.1)
    register(api, client, task.task_id, receiver.url + hook)
    view = settled(api, client, task.task_id)
    subscription = view["subscriptions"][0]
    assert subscription["state"] == "disabled"
    assert subscription["deliveries"][0]["state"] == "gone"
    assert len(receiver.at(hook)) == 1


def test_a_429_storm_and_500s_delay_the_task_but_never_fail_it(
    api: httpx.Client,
    client: dict[str, str],
    worker: WorkerProcess,
    simulator: Simulator,
    receiver: Receiver,
    hook: str,
) -> None:
    faults = [
        Fault.RATE_LIMITED,
        Fault.RATE_LIMITED_EMPTY,
        Fault.RATE_LIMITED_NEW_API,
        Fault.RATE_LIMITED_RETRY_AFTER,
        Fault.SERVER_ERROR,
        Fault.SERVER_ERROR,
        Fault.BROKEN_JSON,
        Fault.SLOW,
        Fault.RATE_LIMITED,
        Fault.SERVER_ERROR,
    ]
    task = simulator.script(duration=0.1, faults=faults)
    register(api, client, task.task_id, receiver.url + hook)
    view = settled(api, client, task.task_id)
    _, event = only_webhook(receiver, hook, client["webhook_secret"])
    assert event["type"] == "video.completed"
    assert view["polls"] == simulator.requests(task.task_id) == len(faults) + 1


def test_an_unknown_id_ends_with_a_clear_error_code(
    api: httpx.Client,
    client: dict[str, str],
    worker: WorkerProcess,
    simulator: Simulator,
    receiver: Receiver,
    hook: str,
    settings: Settings,
) -> None:
    task_id = f"veo3.1-fast:1770350082-{uuid.uuid4().hex[:10]}"  # never created upstream
    register(api, client, task_id, receiver.url + hook)
    view = settled(api, client, task_id)
    _, event = only_webhook(receiver, hook, client["webhook_secret"])
    assert event["type"] == "video.failed"
    assert event["data"]["error"]["code"] == "upstream_unknown_task"
    assert view["polls"] == settings.rejection_limit


def test_a_401_upstream_ends_with_upstream_unauthorized(
    api: httpx.Client,
    client: dict[str, str],
    worker: WorkerProcess,
    simulator: Simulator,
    receiver: Receiver,
    hook: str,
) -> None:
    task = simulator.script(scenario=Scenario.UNAUTHORIZED)
    register(api, client, task.task_id, receiver.url + hook)
    settled(api, client, task.task_id)
    _, event = only_webhook(receiver, hook, client["webhook_secret"])
    assert event["data"]["error"]["code"] == "upstream_unauthorized"


def test_a_task_past_its_deadline_yields_video_timed_out(
    settings: Settings,
    start_api: Callable[[Settings], httpx.Client],
    client: dict[str, str],
    worker: WorkerProcess,
    simulator: Simulator,
    receiver: Receiver,
    hook: str,
) -> None:
    api = start_api(dataclasses.replace(settings, poll_deadline=0.6))
    task = simulator.script(scenario=Scenario.NEVER_ENDS)
    register(api, client, task.task_id, receiver.url + hook)
    settled(api, client, task.task_id)
    _, event = only_webhook(receiver, hook, client["webhook_secret"])
    assert event["type"] == "video.timed_out"
    assert event["data"]["status"] == "video_generating"
    assert event["data"]["error"]["code"] == "deadline_exceeded"


def test_a_deleted_task_is_polled_no_more(
    api: httpx.Client,
    client: dict[str, str],
    worker: WorkerProcess,
    simulator: Simulator,
    receiver: Receiver,
    hook: str,
    redis_url: str,
) -> None:
    task = simulator.script(scenario=Scenario.NEVER_ENDS)
    register(api, client, task.task_id, receiver.url + hook)
    wait_for(lambda: simulator.requests(task.task_id) >= 2, 10, "two polls")
    assert api.delete(f"/v1/tasks/{task.task_id}", headers=auth(client)).status_code == 204
    at_delete = simulator.requests(task.task_id)
    conn = redis.Redis.from_url(redis_url)
    # The chain ends when its next wake-up sees the cancellation: arq then drops the job.
    wait_for(
        lambda: not conn.exists("arq:job:" + keys.poll_job(task.task_id)), 10, "the poll job to end"
    )
    conn.close()
    assert simulator.requests(task.task_id) <= at_delete + 1  # at most the poll in flight
    assert task_view(api, client, task.task_id)["state"] == "cancelled"
    assert receiver.at(hook) == []


def test_two_subscriptions_share_one_poller(
    api: httpx.Client,
    client: dict[str, str],
    worker: WorkerProcess,
    simulator: Simulator,
    receiver: Receiver,
    hook: str,
    redis_url: str,
) -> None:
    other = create_client(redis_url, "other")
    task = simulator.script(duration=0.5)
    register(api, client, task.task_id, receiver.url + hook)
    register(api, other, task.task_id, receiver.url + hook + "-other")
    view = settled(api, client, task.task_id)
    settled(api, other, task.task_id)
    mine, _ = only_webhook(receiver, hook, client["webhook_secret"])
    theirs, _ = only_webhook(receiver, hook + "-other", other["webhook_secret"])
    assert mine.headers["webhook-id"] != theirs.headers["webhook-id"]
    assert view["polls"] == simulator.requests(task.task_id)


def test_registering_on_an_ended_task_delivers_at_once(
    api: httpx.Client,
    client: dict[str, str],
    worker: WorkerProcess,
    simulator: Simulator,
    receiver: Receiver,
    hook: str,
) -> None:
    task = simulator.script(duration=0.1)
    register(api, client, task.task_id, receiver.url + hook)
    settled(api, client, task.task_id)
    polls = simulator.requests(task.task_id)
    register(api, client, task.task_id, receiver.url + hook + "-late")
    wait_for(lambda: receiver.accepted(hook + "-late"), 10, "the late webhook")
    _, event = only_webhook(receiver, hook + "-late", client["webhook_secret"])
    assert event["type"] == "video.completed"
    assert simulator.requests(task.task_id) == polls  # no new poll for a task that ended


def test_a_lost_wake_up_is_found_by_the_sweeper(
    api: httpx.Client,
    client: dict[str, str],
    settings: Settings,
    simulator: Simulator,
    receiver: Receiver,
    hook: str,
    redis_url: str,
    start_worker: Callable[[Settings], WorkerProcess],
) -> None:
    task = simulator.script(duration=0.1)
    register(api, client, task.task_id, receiver.url + hook)
    conn = redis.Redis.from_url(redis_url)
    job_id = keys.poll_job(task.task_id)
    # What a Redis failover can do: the task's record survives, its arq job does not.
    conn.delete("arq:job:" + job_id)
    conn.zrem("arq:queue", job_id)
    conn.close()
    start_worker(settings)
    settled(api, client, task.task_id)
    _, event = only_webhook(receiver, hook, client["webhook_secret"])
    assert event["type"] == "video.completed"
