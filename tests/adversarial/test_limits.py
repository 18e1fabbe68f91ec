"""Amplification and fan-out: one client cannot multiply its POSTs, crowd a task, or slow
another client's reads of it (issue 10, cases 7 and 8)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis
from arq.connections import ArqRedis

from tests.support import Trip, WorkerProcess, auth, create_client
from tracker.api import create_app
from tracker.server import start
from tracker.settings import Settings
from tracker.store import keys


def register(api: httpx.Client, client: dict[str, str], task_id: str, path: str) -> httpx.Response:
    return api.post(
        "/v1/tasks", headers=auth(client),
        json={"task_id": task_id, "callback_url": f"http://127.0.0.1:9/{path}"},
    )  # fmt: skip


def test_one_client_holds_at_most_its_share_of_a_tasks_subscriptions(
    settings: Settings, start_api: Callable[[Settings], httpx.Client], redis_url: str
) -> None:
    limited = dataclasses.replace(  # several clients on one task: shared tasks allowed
        settings, subscriptions_per_task_per_client=3, subscriptions_per_task=5, shared_tasks=True
    )
    api = start_api(dataclasses.replace(limited, registration_rate=10**6))
    first, second = create_client(redis_url, "first"), create_client(redis_url, "second")
    for n in range(3):
        assert register(api, first, "veo3:1-shared", f"a{n}").status_code == 201
    refused = register(api, first, "veo3:1-shared", "a3")
    assert refused.status_code == 422
    assert refused.json()["type"] == "urn:qrtracker:problem:limit_reached"
    assert register(api, first, "veo3:1-shared", "a0").status_code == 200  # the same one again
    for n in range(2):
        assert register(api, second, "veo3:1-shared", f"b{n}").status_code == 201
    assert register(api, second, "veo3:1-shared", "b2").status_code == 422  # the task is full
    with redis.Redis.from_url(redis_url) as conn:
        subs = (conn.hget(keys.HOME.task("veo3:1-shared"), "subs") or b"").split()
    assert len(subs) == 5
    # A cancelled subscription still counts: cancelling cannot churn the record without bound.
    assert api.delete("/v1/tasks/veo3:1-shared", headers=auth(first)).status_code == 204
    assert register(api, first, "veo3:1-shared", "a9").status_code == 422


def test_a_client_tracks_at_most_its_limit_of_live_tasks(
    settings: Settings, start_api: Callable[[Settings], httpx.Client], client: dict[str, str]
) -> None:
    api = start_api(dataclasses.replace(settings, live_tasks_per_client=2))
    assert register(api, client, "veo3:1-one", "h").status_code == 201
    assert register(api, client, "veo3:1-two", "h").status_code == 201
    assert register(api, client, "veo3:1-two", "h2").status_code == 201  # not a new task
    assert register(api, client, "veo3:1-three", "h").status_code == 422
    assert api.delete("/v1/tasks/veo3:1-one", headers=auth(client)).status_code == 204
    assert register(api, client, "veo3:1-three", "h").status_code == 201  # a slot came free


@pytest.mark.slow
def test_redeliver_is_rate_limited_per_client(
    trip: Trip, worker: WorkerProcess, settings: Settings,
    start_api: Callable[[Settings], httpx.Client], redis_url: str,
) -> None:  # fmt: skip
    # Two clients on one task: shared tasks allowed.
    api = start_api(dataclasses.replace(settings, redeliveries_per_minute=3, shared_tasks=True))
    trip = dataclasses.replace(trip, api=api)
    task = trip.script(duration=0.1)
    trip.register(task.task_id)
    trip.settled(task.task_id)
    answers = [
        api.post(f"/v1/tasks/{task.task_id}/redeliver", headers=auth(trip.client)).status_code
        for _ in range(5)
    ]
    assert answers == [202, 202, 202, 429, 429]
    other = create_client(redis_url, "other")
    Trip(api, other, trip.simulator, trip.receiver, trip.path + "-o").register(task.task_id)
    again = api.post(f"/v1/tasks/{task.task_id}/redeliver", headers=auth(other))
    assert again.status_code == 202  # another client's budget is its own


class CountingRedis(ArqRedis):  # type: ignore[misc]
    """Counts round trips to Redis: one per command, one per pipeline sent."""

    trips = 0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.trips += 1
        return await super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        send = pipe.execute

        async def execute(raise_on_error: bool = True) -> Any:
            self.trips += 1
            return await send(raise_on_error)

        pipe.execute = execute
        return pipe


def test_reading_a_task_does_not_grow_with_other_clients_subscriptions(
    settings: Settings, redis_url: str
) -> None:
    """Every read of a task's subscriptions, deliveries and attempts is pipelined: one GET
    makes as many round trips to Redis with 1 subscription on the task as with 91."""
    reader = create_client(redis_url, "reader")
    crowd = [create_client(redis_url, f"crowd{n}") for n in range(10)]

    async def run() -> tuple[int, int]:
        redis_conn = CountingRedis.from_url(redis_url)
        shared = dataclasses.replace(settings, shared_tasks=True)  # a crowd on one task
        server, task = await start(create_app(shared, redis=redis_conn))
        url = f"http://127.0.0.1:{server.port}"
        try:
            async with httpx.AsyncClient(base_url=url, timeout=10) as api:

                async def register(client: dict[str, str], task_id: str, path: str) -> None:
                    body = {"task_id": task_id, "callback_url": f"http://127.0.0.1:9/{path}"}
                    response = await api.post("/v1/tasks", headers=auth(client), json=body)
                    assert response.status_code == 201, response.text

                await register(reader, "veo3:1-quiet", "r")
                await register(reader, "veo3:1-crowded", "r")
                for n, member in enumerate(crowd):
                    for m in range(9):
                        await register(member, "veo3:1-crowded", f"c{n}-{m}")

                async def round_trips(task_id: str) -> int:
                    before = redis_conn.trips
                    view = await api.get(f"/v1/tasks/{task_id}", headers=auth(reader))
                    assert view.status_code == 200
                    assert len(view.json()["subscriptions"]) == 1  # only the reader's own
                    return redis_conn.trips - before

                await round_trips("veo3:1-quiet")  # the scripts loaded: a cold Redis loads them
                # The fewest of three reads each: once a second a request also checks Redis's
                # identity (the epoch), a trip or two that is not the read's.
                quiet = min([await round_trips("veo3:1-quiet") for _ in range(3)])
                return quiet, min([await round_trips("veo3:1-crowded") for _ in range(3)])
        finally:
            server.should_exit = True
            await task
            await redis_conn.aclose()

    quiet, crowded = asyncio.run(run())
    assert quiet == crowded
    assert crowded <= 9
