"""Ended records expire after the retention; live ones never do."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import httpx
import pytest
import redis

from tests.support import Trip, WorkerProcess, auth, wait_for
from tracker.devtools.simulator import Scenario
from tracker.settings import Settings
from tracker.store import keys

pytestmark = pytest.mark.slow


def test_ended_records_expire_and_live_ones_do_not(
    trip: Trip,
    settings: Settings,
    start_api: Callable[[Settings], httpx.Client],
    start_worker: Callable[[Settings], WorkerProcess],
    redis_url: str,
) -> None:
    settings = dataclasses.replace(settings, retention=1.0, job_timeout_override=1.0)
    trip = dataclasses.replace(trip, api=start_api(settings))
    start_worker(settings)
    live = trip.script(scenario=Scenario.NEVER_ENDS)
    ended = trip.script(duration=0.1)
    live_sub = trip.register(live.task_id, suffix="-live")
    ended_sub = trip.register(ended.task_id)
    view = trip.settled(ended.task_id)
    delivery_id = view["subscriptions"][0]["deliveries"][0]["id"]
    conn = redis.Redis.from_url(redis_url)
    task_ttl = conn.ttl(keys.HOME.task(ended.task_id))
    assert 0 < task_ttl <= settings.retention + settings.delivery_window + 1
    assert 0 < conn.ttl(keys.HOME.task_answer(ended.task_id)) <= task_ttl  # its answer goes with it
    assert conn.ttl(keys.HOME.subscription(ended_sub["id"])) > 0
    # The delivery goes after the retention; the task outlives it by the delivery window.
    wait_for(lambda: not conn.exists(keys.HOME.delivery(delivery_id),
                                     keys.HOME.delivery_attempts(delivery_id)), 10,
             "the ended delivery to expire")  # fmt: skip
    assert conn.exists(keys.HOME.task(ended.task_id))
    wait_for(
        lambda: not conn.exists(
            keys.HOME.task(ended.task_id), keys.HOME.task_answer(ended.task_id)
        ), 20,
        "the ended task and its answer to expire",
    )  # fmt: skip
    assert conn.ttl(keys.HOME.task(live.task_id)) == -1  # live: no expiry
    assert conn.ttl(keys.HOME.subscription(live_sub["id"])) == -1
    listed = trip.api.get("/v1/tasks", headers=auth(trip.client))
    assert [t["task_id"] for t in listed.json()["tasks"]] == [live.task_id]
    conn.close()
