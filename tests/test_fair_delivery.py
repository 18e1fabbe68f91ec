"""Fair delivery with real worker processes: a trickling receiver is cut off on schedule, an
origin's breaker opens, probes and closes, and a quiet client's webhooks arrive while a noisy
client's black hole is open (issue 11)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support import Trip, WorkerProcess, auth, create_client, wait_for
from tracker.devtools.peers import BlackHole, Trickler
from tracker.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    with BlackHole() as server:
        yield server


@pytest.fixture
def trickler() -> Iterator[Trickler]:
    with Trickler(gap=0.4) as server:
        yield server


def register(api: httpx.Client, client: dict[str, str], task_id: str, url: str) -> None:
    response = api.post(
        "/v1/tasks", headers=auth(client), json={"task_id": task_id, "callback_url": url}
    )
    assert response.status_code == 201, response.text


def deliveries(api: httpx.Client, client: dict[str, str], task_id: str) -> list[dict[str, Any]]:
    view = api.get(f"/v1/tasks/{task_id}", headers=auth(client)).json()
    return [d for s in view.get("subscriptions", []) for d in s["deliveries"]]


def destination(api: httpx.Client, client: dict[str, str], task_id: str) -> dict[str, Any]:
    view = api.get(f"/v1/tasks/{task_id}", headers=auth(client)).json()
    return view["subscriptions"][0]["destination"]  # type: ignore[no-any-return]


def test_a_trickling_receiver_ends_dead_on_schedule_with_every_attempt_recorded(
    trip: Trip, settings: Settings, start_worker: Callable[[Settings], WorkerProcess],
    trickler: Trickler,
) -> None:  # fmt: skip
    fast = dataclasses.replace(settings, delivery_timeout=1.0, delivery_schedule=(0.1, 0.1),
                               breaker_failures=100)  # fmt: skip
    start_worker(fast)
    task = trip.script(duration=0.1)
    register(trip.api, trip.client, task.task_id, trickler.url + "/slow")

    def dead() -> list[dict[str, Any]] | None:
        found = deliveries(trip.api, trip.client, task.task_id)
        return found if found and found[0]["state"] == "dead" else None

    (delivery,) = wait_for(dead, 30, "the trickled delivery to go dead")
    attempts = delivery["attempts"]
    assert len(attempts) == 3  # the whole schedule, each attempt recorded
    assert all(a["error"] == "timeout" and a["status_code"] is None for a in attempts)
    assert all(900 <= a["latency_ms"] < 2500 for a in attempts)  # cut at the 1 s deadline


def test_an_origins_breaker_opens_probes_and_closes(
    trip: Trip, settings: Settings, start_worker: Callable[[Settings], WorkerProcess]
) -> None:
    flaky = dataclasses.replace(settings, breaker_failures=2, breaker_open=0.5,
                                delivery_schedule=(0.05,) * 8)  # fmt: skip
    start_worker(flaky)
    trip.receiver.script(trip.path, 500, 500, 500)  # two to open, one failed probe, then 204
    task = trip.script(duration=0.1)
    trip.register(task.task_id)
    seen = wait_for(
        lambda: (d := destination(trip.api, trip.client, task.task_id))["circuit"] == "open" and d,
        20, "the origin to open",
    )  # fmt: skip
    assert seen["failures"] >= 2 and seen["retry_at"]
    view = trip.settled(task.task_id)
    (delivery,) = [d for s in view["subscriptions"] for d in s["deliveries"]]
    assert delivery["state"] == "delivered"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 500, 204]
    # The breaker hears of the success just after the attempt is recorded.
    wait_for(lambda: destination(trip.api, trip.client, task.task_id)["circuit"] == "closed",
             5, "the origin to close")  # fmt: skip


def test_a_quiet_clients_webhooks_arrive_while_a_noisy_clients_black_hole_is_open(
    trip: Trip, settings: Settings, start_worker: Callable[[Settings], WorkerProcess],
    start_api: Callable[[Settings], httpx.Client], black_hole: BlackHole, redis_url: str,
) -> None:  # fmt: skip
    fair = dataclasses.replace(settings, delivery_timeout=1.0, delivery_per_origin=3,
                               breaker_failures=3, breaker_open=30.0,
                               registration_rate=10**6)  # fmt: skip
    start_worker(fair)
    trip = dataclasses.replace(trip, api=start_api(fair))
    noisy = create_client(redis_url, "noisy")
    noisy_tasks = [trip.script(duration=0.3).task_id for _ in range(40)]
    quiet_tasks = [trip.script(duration=0.3).task_id for _ in range(5)]
    for task_id in noisy_tasks:
        register(trip.api, noisy, task_id, black_hole.url + "/void")
    for n, task_id in enumerate(quiet_tasks):
        trip.register(task_id, suffix=f"-{n}")
    for task_id in quiet_tasks:
        trip.settled(task_id)
    assert all(len(trip.receiver.accepted(trip.path + f"-{n}")) == 1 for n in range(5))
    wait_for(lambda: destination(trip.api, noisy, noisy_tasks[0])["circuit"] == "open", 20,
             "the black hole's circuit to open")  # fmt: skip
    assert black_hole.most <= 3  # never more than its share of attempts at once
    pending = [d for t in noisy_tasks for d in deliveries(trip.api, noisy, t)]
    assert all(d["state"] == "pending" for d in pending)
    assert sum(len(d["attempts"]) for d in pending) <= 3 + 3  # waiting costs no attempts
