"""Webhook features end to end: secret rotation, redelivery, event filters, no leaked secrets."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import httpx
import pytest
from click.testing import CliRunner
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.conftest import SIM_KEY, WorkerProcess, auth, settings_env, wait_for
from tests.flows import only_webhook, register, settled
from tracker.cli import main
from tracker.receiver import Receiver
from tracker.settings import Settings
from tracker.simulator import Fault, Scenario, Simulator

pytestmark = pytest.mark.slow


def rotate(redis_url: str, client_id: str, overlap: float) -> str:
    result = CliRunner().invoke(
        main, ["clients", "rotate-secret", client_id, "--json"],
        env={"REDIS_URL": redis_url, "TRACKER_SECRET_ROTATION_OVERLAP": str(overlap)},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["webhook_secret"]  # type: ignore[no-any-return]


def test_after_rotation_webhooks_verify_under_both_secrets_then_only_the_new(
    api: httpx.Client,
    client: dict[str, str],
    worker: WorkerProcess,
    simulator: Simulator,
    receiver: Receiver,
    hook: str,
    redis_url: str,
) -> None:
    old = client["webhook_secret"]
    new = rotate(redis_url, client["id"], overlap=4.0)
    rotated_at = time.time()
    during = simulator.script(duration=0.1)
    register(api, client, during.task_id, receiver.url + hook)
    settled(api, client, during.task_id)
    hit = receiver.accepted(hook)[0]
    assert hit.at < rotated_at + 4.0  # sent inside the overlap
    assert len(hit.headers["webhook-signature"].split()) == 2
    Webhook(old).verify(hit.body, hit.headers)
    Webhook(new).verify(hit.body, hit.headers)

    wait_for(lambda: time.time() > rotated_at + 4.5, 10, "the overlap to pass")
    after = simulator.script(duration=0.1)
    register(api, client, after.task_id, receiver.url + hook + "-after")
    settled(api, client, after.task_id)
    late = receiver.accepted(hook + "-after")[0]
    assert len(late.headers["webhook-signature"].split()) == 1
    Webhook(new).verify(late.body, late.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(late.body, late.headers)


def test_redeliver_sends_the_final_event_again_with_the_same_webhook_id(
    api: httpx.Client,
    client: dict[str, str],
    worker: WorkerProcess,
    simulator: Simulator,
    receiver: Receiver,
    hook: str,
) -> None:
    receiver.script(hook, *[500] * 4)  # the whole (compressed) schedule fails: dead
    task = simulator.script(duration=0.1)
    register(api, client, task.task_id, receiver.url + hook)
    dead = settled(api, client, task.task_id)["subscriptions"][0]["deliveries"][0]
    assert dead["state"] == "dead"
    answer = api.post(f"/v1/tasks/{task.task_id}/redeliver", headers=auth(client))
    assert answer.status_code == 202
    assert answer.json() == {"deliveries": [dead["id"]]}
    again = settled(api, client, task.task_id)["subscriptions"][0]["deliveries"][0]
    assert again["state"] == "delivered"
    assert [a["status_code"] for a in again["attempts"]] == [204]  # a new attempt log
    hits = receiver.at(hook)
    assert len({h.headers["webhook-id"] for h in hits}) == 1
    assert [h.answered for h in hits] == [500, 500, 500, 500, 204]


def test_status_changed_events_follow_each_new_status_word_with_metadata(
    api: httpx.Client,
    client: dict[str, str],
    worker: WorkerProcess,
    simulator: Simulator,
    receiver: Receiver,
    hook: str,
) -> None:
    task = simulator.script(scenario=Scenario.SUCCESS, duration=1.2)
    register(
        api,
        client,
        task.task_id,
        receiver.url + hook,
        metadata={"job": "a"},
        events=["video.status_changed", "video.completed"],
    )
    view = settled(api, client, task.task_id)
    events = [
        Webhook(client["webhook_secret"]).verify(h.body, h.headers) for h in receiver.accepted(hook)
    ]
    changes = [e for e in events if e["type"] == "video.status_changed"]
    statuses = [e["data"]["status"] for e in changes]
    assert statuses, "no status_changed event"
    assert len(statuses) == len(set(statuses))  # one event per status word
    assert events[-1]["type"] == "video.completed" or "video.completed" in [
        e["type"] for e in events
    ]
    assert all(e["data"]["metadata"] == {"job": "a"} for e in events)
    assert all(e["data"]["state"] == "tracking" for e in changes)
    ids = [d["id"] for d in view["subscriptions"][0]["deliveries"]]
    assert len(ids) == len(set(ids)) == len(events)


def test_an_events_filter_without_final_events_gets_none(
    api: httpx.Client,
    client: dict[str, str],
    worker: WorkerProcess,
    simulator: Simulator,
    receiver: Receiver,
    hook: str,
) -> None:
    task = simulator.script(scenario=Scenario.FAILED, duration=0.1)
    register(api, client, task.task_id, receiver.url + hook, events=["video.completed"])
    wait_for(
        lambda: (
            api.get(f"/v1/tasks/{task.task_id}", headers=auth(client)).json()["state"] == "failed"
        ),
        10,
        "the task to fail",
    )
    view = api.get(f"/v1/tasks/{task.task_id}", headers=auth(client)).json()
    assert view["subscriptions"][0]["deliveries"] == []
    assert receiver.at(hook) == []


def test_no_secret_appears_in_any_log_line_or_error_body(
    settings: Settings,
    start_api: Callable[[Settings], httpx.Client],
    client: dict[str, str],
    start_worker: Callable[[Settings], WorkerProcess],
    simulator: Simulator,
    receiver: Receiver,
    hook: str,
    caplog: pytest.LogCaptureFixture,
    redis_url: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    api = start_api(settings)
    worker = start_worker(settings)
    receiver.script(hook, 500)
    task = simulator.script(duration=0.1, faults=[Fault.SERVER_ERROR, Fault.RATE_LIMITED])
    register(api, client, task.task_id, receiver.url + hook, metadata={"n": 1})
    settled(api, client, task.task_id)
    only_webhook(receiver, hook, client["webhook_secret"])
    bodies = [
        api.post(
            "/v1/tasks", headers={"authorization": "Bearer " + client["api_key"] + "x"}, json={}
        ).text,
        api.post("/v1/tasks", headers=auth(client), content=b"{bad").text,
        api.get("/v1/tasks/nope", headers=auth(client)).text,
    ]
    worker.stop()
    logs = worker.output() + caplog.text
    assert "poll_task" in logs and "delivery attempt" in logs  # the logs were captured
    secrets = [
        client["api_key"],
        client["webhook_secret"],
        SIM_KEY,
        client["webhook_secret"].removeprefix("whsec_"),
    ]
    for secret in secrets:
        assert secret not in logs
        assert all(secret not in body for body in bodies)
    assert SIM_KEY in settings_env(settings).values()  # the worker really had the key
