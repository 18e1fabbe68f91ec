"""Webhook features end to end: secret rotation, redelivery, event filters, no leaked secrets."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import pytest
from click.testing import CliRunner
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support import SIM_KEY, Trip, WorkerProcess, auth, wait_for
from tracker.cli import main
from tracker.devtools.simulator import Fault, Scenario
from tracker.settings import Settings

pytestmark = pytest.mark.slow


def rotate(redis_url: str, client_id: str, overlap: float) -> str:
    result = CliRunner().invoke(
        main, ["clients", "rotate-secret", client_id, "--json"],
        env={"REDIS_URL": redis_url, "TRACKER_SECRET_ROTATION_OVERLAP": str(overlap)},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["webhook_secret"]  # type: ignore[no-any-return]


def test_after_rotation_webhooks_verify_under_both_secrets_then_only_the_new(
    trip: Trip, worker: WorkerProcess, redis_url: str
) -> None:
    old = trip.client["webhook_secret"]
    new = rotate(redis_url, trip.client["id"], overlap=4.0)
    rotated_at = time.time()
    during = trip.script(duration=0.1)
    trip.register(during.task_id)
    trip.settled(during.task_id)
    hit = trip.receiver.accepted(trip.path)[0]
    assert hit.at < rotated_at + 4.0  # sent inside the overlap
    assert len(hit.headers["webhook-signature"].split()) == 2
    Webhook(old).verify(hit.body, hit.headers)
    Webhook(new).verify(hit.body, hit.headers)

    wait_for(lambda: time.time() > rotated_at + 4.5, 10, "the overlap to pass")
    after = trip.script(duration=0.1)
    trip.register(after.task_id, suffix="-after")
    trip.settled(after.task_id)
    late = trip.receiver.accepted(trip.path + "-after")[0]
    assert len(late.headers["webhook-signature"].split()) == 1
    Webhook(new).verify(late.body, late.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(late.body, late.headers)


def test_redeliver_sends_the_final_event_again_with_the_same_webhook_id(
    trip: Trip, worker: WorkerProcess
) -> None:
    trip.receiver.script(trip.path, *[500] * 4)  # the whole (compressed) schedule fails: dead
    task = trip.script(duration=0.1)
    trip.register(task.task_id)
    dead = trip.settled(task.task_id)["subscriptions"][0]["deliveries"][0]
    assert dead["state"] == "dead"
    answer = trip.api.post(f"/v1/tasks/{task.task_id}/redeliver", headers=auth(trip.client))
    assert answer.status_code == 202
    assert answer.json() == {"deliveries": [dead["id"]], "was": {dead["id"]: "dead"}}
    again = trip.settled(task.task_id)["subscriptions"][0]["deliveries"][0]
    assert again["state"] == "delivered"
    # A new round: the earlier attempts stay in the log, each named by its round.
    rounds = [(a["round"], a["status_code"]) for a in again["attempts"]]
    assert rounds == [(0, 500), (0, 500), (0, 500), (0, 500), (1, 204)]
    hits = trip.hits()
    assert len({h.headers["webhook-id"] for h in hits}) == 1
    assert [h.answered for h in hits] == [500, 500, 500, 500, 204]


def test_status_changed_events_follow_each_new_status_word_with_metadata(
    trip: Trip, worker: WorkerProcess
) -> None:
    trip.worker_polls()  # then a task of 1.2 s is seen running
    task = trip.script(scenario=Scenario.SUCCESS, duration=1.2)
    trip.register(task.task_id, metadata={"job": "a"},
                  events=["video.status_changed", "video.completed"])  # fmt: skip
    view = trip.settled(task.task_id)
    verify = Webhook(trip.client["webhook_secret"]).verify
    events = [verify(h.body, h.headers) for h in trip.receiver.accepted(trip.path)]
    changes = [e for e in events if e["type"] == "video.status_changed"]
    statuses = [e["data"]["status"] for e in changes]
    assert statuses, "no status_changed event"
    assert len(statuses) == len(set(statuses))  # one event per status word
    assert [e["type"] for e in events].count("video.completed") == 1
    assert all(e["data"]["metadata"] == {"job": "a"} for e in events)
    assert all(e["data"]["state"] == "tracking" for e in changes)
    ids = [d["id"] for d in view["subscriptions"][0]["deliveries"]]
    assert len(ids) == len(set(ids)) == len(events)


def test_an_events_filter_without_final_events_gets_none(trip: Trip, worker: WorkerProcess) -> None:
    task = trip.script(scenario=Scenario.FAILED, duration=0.1)
    trip.register(task.task_id, events=["video.completed"])
    view = wait_for(lambda: (v := trip.view(task.task_id))["state"] == "failed" and v, 10,
                    "the task to fail")  # fmt: skip
    assert view["subscriptions"][0]["deliveries"] == []
    assert trip.hits() == []


def test_no_secret_appears_in_any_log_line_or_error_body(
    trip: Trip,
    settings: Settings,
    start_worker: Callable[[Settings], WorkerProcess],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    worker = start_worker(settings)
    trip.receiver.script(trip.path, 500)
    task = trip.script(duration=0.1, faults=[Fault.SERVER_ERROR, Fault.RATE_LIMITED])
    trip.register(task.task_id, metadata={"n": 1})
    trip.settled(task.task_id)
    trip.only_webhook()
    client, api = trip.client, trip.api
    bodies = [
        api.post("/v1/tasks", headers={"authorization": f"Bearer {client['api_key']}x"},
                 json={}).text,
        api.post("/v1/tasks", headers=auth(client), content=b"{bad").text,
        api.get("/v1/tasks/nope", headers=auth(client)).text,
    ]  # fmt: skip
    worker.stop()
    logs = worker.output() + caplog.text
    assert "task ended" in logs and "delivery attempt" in logs  # the logs were captured
    secrets = [client["api_key"], client["webhook_secret"], SIM_KEY,
               client["webhook_secret"].removeprefix("whsec_")]  # fmt: skip
    for secret in secrets:
        assert secret not in logs
        assert all(secret not in body for body in bodies)
    assert SIM_KEY in settings.to_env().values()  # the worker really had the key
