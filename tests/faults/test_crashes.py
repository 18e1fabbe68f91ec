"""Workers killed with SIGKILL while polling and while delivering; a worker stopped by SIGTERM."""

from __future__ import annotations

import dataclasses
import signal
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.faults.audit import Tracked, audit, register_all, settled
from tests.support import Trip, WorkerProcess, auth, client_records, wait_for
from tracker.devtools.receiver import Receiver
from tracker.devtools.simulator import Fault, Scenario, Simulator
from tracker.settings import Settings

pytestmark = pytest.mark.slow


def scripted(simulator: Simulator, path: str, count: int, **script: object) -> list[Tracked]:
    tasks = [simulator.script(**script) for _ in range(count)]  # type: ignore[arg-type]
    return [Tracked(t.task_id, "", path, "completed") for t in tasks]


@pytest.mark.cluster
def test_a_worker_killed_while_polling_loses_nothing(
    api: httpx.Client,
    client: dict[str, str],
    settings: Settings,
    simulator: Simulator,
    receiver: Receiver,
    start_worker: Callable[[Settings], WorkerProcess],
    redis_url: str,
) -> None:
    victim = start_worker(settings)
    path = f"/hooks/{uuid.uuid4().hex}"
    # Every task's second poll hangs past the time-out: polls are in flight when the kill comes,
    # and with the victim alone they are all its own (leased to it).
    tracked = register_all(
        api,
        client,
        receiver,
        scripted(simulator, path, 30, duration=1.0, faults=[Fault.RATE_LIMITED, Fault.SLOW]),
    )
    wait_for(lambda: simulator.held >= 10, 20, "the victim's polls in flight")
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()
    survivor = start_worker(settings)
    result = settled(redis_url, receiver, tracked, 60, "every task to settle on the survivor")
    print("\n" + result.report())
    assert result.table == {"delivered": 30}
    assert result.duplicate_event_ids == []
    assert survivor.process.poll() is None


@pytest.mark.cluster
def test_a_worker_killed_while_delivering_loses_nothing_and_repeats_only_the_same_id(
    api: httpx.Client,
    client: dict[str, str],
    settings: Settings,
    simulator: Simulator,
    receiver: Receiver,
    start_worker: Callable[[Settings], WorkerProcess],
    redis_url: str,
) -> None:
    victim = start_worker(settings)
    path = f"/hooks/{uuid.uuid4().hex}"
    receiver.hold(path, 0.6)  # deliveries are in flight (the victim's, it is alone) at the kill
    tracked = register_all(api, client, receiver, scripted(simulator, path, 20, duration=0.2))
    wait_for(lambda: receiver.open_posts() >= 2, 20, "the victim's POSTs in flight")
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()
    start_worker(settings)  # and a replacement, as an orchestrator would start
    result = settled(redis_url, receiver, tracked, 60, "every delivery to settle")
    print("\n" + result.report())
    assert result.table == {"delivered": 20}
    assert result.duplicate_event_ids == []


def test_sigterm_lets_in_flight_deliveries_finish(
    api: httpx.Client,
    client: dict[str, str],
    settings: Settings,
    simulator: Simulator,
    receiver: Receiver,
    start_worker: Callable[[Settings], WorkerProcess],
    redis_url: str,
) -> None:
    worker = start_worker(settings)
    path = f"/hooks/{uuid.uuid4().hex}"
    receiver.hold(path, 0.6)  # within the delivery time-out (1 s)
    tracked = register_all(api, client, receiver, scripted(simulator, path, 5, duration=0.1))
    wait_for(lambda: len(receiver.at(path)) >= 1, 20, "a delivery in flight")
    worker.process.send_signal(signal.SIGTERM)
    worker.process.wait(settings.shutdown_grace + 5)  # bounded: the grace period, then exit
    assert worker.process.returncode == 0
    # What was in flight finished and was recorded; the rest waits in Redis for a worker.
    in_flight = audit(redis_url, receiver, tracked)
    assert in_flight.table["delivered"] >= 1
    start_worker(settings)
    result = settled(
        redis_url, receiver, tracked, 30, "the rest to be delivered by the next worker"
    )
    assert result.table == {"delivered": 5}
    assert result.repeats == 0  # nothing finished was sent again
    assert "shutdown on SIGTERM" in worker.output()


def test_a_scenario_mix_settles_as_scripted(
    api: httpx.Client,
    client: dict[str, str],
    settings: Settings,
    simulator: Simulator,
    receiver: Receiver,
    worker: WorkerProcess,
    redis_url: str,
) -> None:
    path = f"/hooks/{uuid.uuid4().hex}"
    items = [
        Tracked(
            simulator.script(scenario=s, duration=0.2).task_id,
            "",
            path,
            "completed" if s in {Scenario.SUCCESS, Scenario.DOC_EXAMPLE} else "failed",
        )
        for s in (Scenario.SUCCESS, Scenario.DOC_EXAMPLE, Scenario.FAILED, Scenario.ERROR)
    ]
    tracked = register_all(api, client, receiver, items)
    result = settled(redis_url, receiver, tracked, 30, "the mix to settle")
    assert result.mismatched == []
    assert result.table == {"delivered": 2, "failed": 2}


@pytest.mark.cluster
def test_orphans_in_the_due_set_are_dropped_and_never_starve_a_real_delivery(
    trip: Trip, worker: WorkerProcess, redis_url: str
) -> None:
    # What a lost record leaves (an expiry, a restore from an older file): due entries of
    # deliveries that no longer exist, more of them than a worker claims at once, all due
    # before the real one, in the due set of the client's partition.
    with client_records(redis_url, trip.client["id"]) as (conn, space):
        conn.zadd(space.DUE_DELIVERIES, {f"msg_orphan{n:05d}": 1.0 + n for n in range(1500)})
    task = trip.script(duration=0.1)
    trip.register(task.task_id)
    assert trip.settled(task.task_id)["subscriptions"][0]["deliveries"][0]["state"] == "delivered"
    with client_records(redis_url, trip.client["id"]) as (conn, space):
        wait_for(lambda: conn.zcard(space.DUE_DELIVERIES) == 0, 10, "every orphan to be dropped")
    assert trip.only_webhook()[1]["type"] == "video.completed"


@pytest.mark.cluster
def test_a_worker_paused_mid_post_never_moves_its_delivery_back(
    trip: Trip, settings: Settings, start_worker: Callable[[Settings], WorkerProcess]
) -> None:
    """SIGSTOP during a POST, as a long GC or a throttled container would: once its lease runs
    out the other worker sends the same event (the one repeat at-least-once allows, under the
    same webhook-id); the paused worker's late answer, when it wakes, records nothing."""
    paused = start_worker(settings)
    trip.receiver.script(trip.path, 500)  # the paused worker's answer; then 204s
    trip.receiver.hold(trip.path, 0.3)
    task = trip.script(duration=0.1)
    trip.register(task.task_id)
    wait_for(lambda: trip.hits(), 20, "the first POST in flight")
    paused.process.send_signal(signal.SIGSTOP)
    try:
        start_worker(settings)  # claims the delivery once the paused worker's lease runs out
        view = trip.settled(task.task_id)
    finally:
        paused.process.send_signal(signal.SIGCONT)
    (delivery,) = view["subscriptions"][0]["deliveries"]
    assert delivery["state"] == "delivered"
    assert [a["status_code"] for a in delivery["attempts"]] == [204]
    # It wakes past its job time-out (cut off there) or within it (its record refused):
    # either way its attempt is not recorded.
    wait_for(lambda: "its delivery had moved on" in (out := paused.output())
             or '"message": "delivery failed"' in out, 20,
             "the paused worker to wake and drop its stale attempt")  # fmt: skip
    after = trip.view(task.task_id)["subscriptions"][0]["deliveries"][0]
    assert (after["state"], len(after["attempts"])) == ("delivered", 1)  # nothing went back
    hits = trip.hits()
    assert [h.answered for h in hits] == [500, 204]  # no third POST
    assert len({h.headers["webhook-id"] for h in hits}) == 1


def test_a_worker_paused_mid_poll_never_moves_a_task_back(
    api: httpx.Client,
    client: dict[str, str],
    settings: Settings,
    simulator: Simulator,
    receiver: Receiver,
    start_worker: Callable[[Settings], WorkerProcess],
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGSTOP with polls in flight (each upstream answer takes 0.4 s): the other worker takes
    the tasks once the leases run out and ends them; the paused worker wakes with answers
    that are stale by then, and neither ends a task again nor makes a second event."""
    settings = dataclasses.replace(settings, upstream_timeout=2.0)
    monkeypatch.setattr(simulator, "slow_delay", 0.4)  # the simulator outlives this test
    simulator.outage(Fault.SLOW, 3.0)
    paused = start_worker(settings)
    path = f"/hooks/{uuid.uuid4().hex}"
    tracked = register_all(api, client, receiver, scripted(simulator, path, 10, duration=1.0))
    wait_for(lambda: any(simulator.requests(t.task_id) for t in tracked), 20, "polls in flight")
    paused.process.send_signal(signal.SIGSTOP)
    try:
        other = start_worker(settings)
        result = settled(redis_url, receiver, tracked, 60, "every task on the other worker")
    finally:
        paused.process.send_signal(signal.SIGCONT)
    assert result.table == {"delivered": 10}, result.report()
    # The paused worker alone from here: once it has tracked a new task to its end, it has
    # run past its stale polls too.
    other.process.send_signal(signal.SIGTERM)
    other.process.wait(settings.shutdown_grace + 5)
    late = register_all(api, client, receiver, scripted(simulator, path, 1, duration=0.1))
    result = settled(redis_url, receiver, tracked + late, 60, "the paused worker's own task")
    assert result.table == {"delivered": 11}, result.report()
    assert result.duplicate_event_ids == [] and result.repeats == 0
    assert result.mismatched == []


def test_redeliver_during_backoff_sends_within_seconds(
    trip: Trip, settings: Settings, start_worker: Callable[[Settings], WorkerProcess]
) -> None:
    start_worker(dataclasses.replace(settings, delivery_schedule=(3600.0,)))  # a retry an hour on
    trip.receiver.script(trip.path, 500)
    task = trip.script(duration=0.1)
    trip.register(task.task_id)

    def in_backoff() -> dict[str, Any] | None:
        view = trip.view(task.task_id)
        found = [d for s in view["subscriptions"] for d in s["deliveries"] if d["attempts"]]
        return found[0] if found else None

    delivery = wait_for(in_backoff, 20, "the first attempt to fail and be recorded")
    assert delivery["state"] == "pending"
    answer = trip.api.post(f"/v1/tasks/{task.task_id}/redeliver", headers=auth(trip.client))
    assert answer.status_code == 202
    assert answer.json()["was"] == {delivery["id"]: "pending"}
    wait_for(lambda: len(trip.hits()) == 2, 5, "the redeliver's POST, within seconds")
    view = trip.settled(task.task_id)["subscriptions"][0]["deliveries"][0]
    rounds = [(a["round"], a["status_code"]) for a in view["attempts"]]
    assert (view["state"], rounds) == ("delivered", [(0, 500), (1, 204)])


def test_redeliver_during_an_attempt_sends_again_right_after_it_never_beside_it(
    trip: Trip, worker: WorkerProcess
) -> None:
    trip.receiver.hold(trip.path, 0.6)  # within the delivery time-out (1 s)
    task = trip.script(duration=0.1)
    trip.register(task.task_id)
    wait_for(lambda: trip.hits(), 20, "the first POST in flight")
    answer = trip.api.post(f"/v1/tasks/{task.task_id}/redeliver", headers=auth(trip.client))
    assert answer.status_code == 202
    assert list(answer.json()["was"].values()) == ["pending"]  # it was in flight
    wait_for(lambda: len(trip.hits()) == 2, 5, "the redeliver's POST, within seconds")
    view = trip.settled(task.task_id)["subscriptions"][0]["deliveries"][0]
    assert view["state"] == "delivered"
    # The attempt in flight when the new round began was not recorded (it is stale): the log
    # holds the new round's one.
    assert [(a["round"], a["status_code"]) for a in view["attempts"]] == [(1, 204)]
    assert trip.receiver.overlaps() == []  # never two POSTs of it at once
    assert len({h.headers["webhook-id"] for h in trip.hits()}) == 1


def test_registering_again_after_a_410_outlives_the_old_expiry_and_leaves_no_orphan(
    trip: Trip,
    settings: Settings,
    start_api: Callable[[Settings], httpx.Client],
    start_worker: Callable[[Settings], WorkerProcess],
    redis_url: str,
) -> None:
    """The 410 ends the delivery, which then expires after the (short) retention; registering
    the same callback again starts it live, and its retries outlast that old expiry."""
    short = dataclasses.replace(settings, retention=1.0, delivery_schedule=(0.6, 0.6, 0.6))
    trip = dataclasses.replace(trip, api=start_api(short))
    start_worker(short)
    trip.receiver.script(trip.path, 410, 500, 500, 500)  # gone; then 1.8 s of failures; 204
    task = trip.script(duration=0.1)
    trip.register(task.task_id)
    gone = trip.settled(task.task_id)["subscriptions"][0]
    assert (gone["state"], gone["deliveries"][0]["state"]) == ("disabled", "gone")
    trip.register(task.task_id)  # the same client, task and callback
    again = trip.settled(task.task_id)["subscriptions"][0]
    (delivery,) = again["deliveries"]
    assert again["state"] == "active" and delivery["state"] == "delivered"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 500, 204]
    with client_records(redis_url, trip.client["id"]) as (conn, space):
        assert conn.zscore(space.DUE_DELIVERIES, delivery["id"]) is None  # no orphan entry
        assert conn.ttl(space.delivery(delivery["id"])) > 0  # ended again: it expires again
        listed = conn.lrange(space.subscription_deliveries(again["id"]), 0, -1)
    assert listed == [delivery["id"].encode()]
