"""Ended records expire after the retention; live ones never do."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import httpx
import pytest
import redis

from tests.conftest import WorkerProcess, wait_for
from tests.flows import register, settled
from tracker import keys
from tracker.receiver import Receiver
from tracker.settings import Settings
from tracker.simulator import Scenario, Simulator

pytestmark = pytest.mark.slow


def test_ended_records_expire_and_live_ones_do_not(
    settings: Settings,
    start_api: Callable[[Settings], httpx.Client],
    client: dict[str, str],
    start_worker: Callable[[Settings], WorkerProcess],
    simulator: Simulator,
    receiver: Receiver,
    hook: str,
    redis_url: str,
) -> None:
    settings = dataclasses.replace(settings, retention=1.0, job_timeout_override=1.0)
    api = start_api(settings)
    start_worker(settings)
    live = simulator.script(scenario=Scenario.NEVER_ENDS)
    ended = simulator.script(duration=0.1)
    live_sub = register(api, client, live.task_id, receiver.url + hook + "-live")
    ended_sub = register(api, client, ended.task_id, receiver.url + hook)
    view = settled(api, client, ended.task_id)
    delivery_id = view["subscriptions"][0]["deliveries"][0]["id"]
    conn = redis.Redis.from_url(redis_url)
    task_ttl = conn.ttl(keys.task(ended.task_id))
    assert 0 < task_ttl <= settings.retention + settings.delivery_window + 1
    assert conn.ttl(keys.subscription(ended_sub["id"])) > 0
    # The delivery goes after the retention; the task outlives it by the delivery window.
    wait_for(lambda: not conn.exists(keys.delivery(delivery_id),
                                     keys.delivery_attempts(delivery_id)), 10,
             "the ended delivery to expire")  # fmt: skip
    assert conn.exists(keys.task(ended.task_id))
    wait_for(lambda: not conn.exists(keys.task(ended.task_id)), 20, "the ended task to expire")
    assert conn.ttl(keys.task(live.task_id)) == -1  # live: no expiry
    assert conn.ttl(keys.subscription(live_sub["id"])) == -1
    listed = api.get("/v1/tasks", headers={"authorization": f"Bearer {client['api_key']}"})
    assert [t["task_id"] for t in listed.json()["tasks"]] == [live.task_id]
    conn.close()
