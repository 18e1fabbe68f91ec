"""Redis killed and restarted, the upstream failing for a while, the receiver down for a while."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.faults.audit import Tracked, register_all, settled
from tests.support import WorkerProcess, auth, create_client, wait_for
from tracker.devtools.receiver import Receiver
from tracker.devtools.simulator import Fault, Simulator
from tracker.embedded_redis import EmbeddedRedis, free_port
from tracker.server import ServerThread
from tracker.settings import Settings
from tracker.store import keys

pytestmark = pytest.mark.slow


def successes(simulator: Simulator, path: str, count: int, duration: float) -> list[Tracked]:
    return [Tracked(simulator.script(duration=duration).task_id, "", path, "completed")
            for _ in range(count)]  # fmt: skip


# How long Redis stays away in the long outage: the fault's own length, past a lease (7 s
# here), the retries of a refused record (about 8 s) and the supervisor's longest pause (10 s).
LONG_OUTAGE = 15.0


@pytest.fixture(params=["everysec", "always"])
def own_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own, on the shipped `appendfsync everysec` and on `always`.

    With `everysec` a SIGKILL can lose the last second or so of writes (the README says so):
    the registrations below are older than that when Redis is killed, and what is lost of the
    work in flight (a poll's record, an attempt's) is done again.
    """
    server = EmbeddedRedis(tmp_path / "redis", fsync=request.param)
    with server:
        yield server


def test_redis_killed_and_restarted_on_its_append_only_file_loses_no_task(
    own_redis: EmbeddedRedis,
    settings: Settings,
    simulator: Simulator,
    receiver: Receiver,
    start_api: Callable[[Settings], httpx.Client],
    start_worker: Callable[[Settings], WorkerProcess],
) -> None:
    settings = dataclasses.replace(settings, redis_url=own_redis.url)
    client = create_client(own_redis.url)
    api = start_api(settings)
    workers = [start_worker(settings), start_worker(settings)]
    path = f"/hooks/{uuid.uuid4().hex}"
    before = register_all(api, client, receiver, successes(simulator, path, 30, 1.5))
    wait_for(lambda: len(receiver.accepted(path)) >= 1, 20, "the first deliveries")

    own_redis.kill()
    refused = api.post(
        "/v1/tasks",
        headers=auth(client),
        json={"task_id": "veo3:1-during", "callback_url": receiver.url + path},
    )
    assert refused.status_code == 503
    assert refused.json()["type"] == "urn:qrtracker:problem:unavailable"
    assert api.get("/readyz").status_code == 503

    own_redis.start()
    wait_for(lambda: api.get("/readyz").status_code == 200, 20, "the API to see Redis again")
    after = register_all(api, client, receiver, successes(simulator, path, 10, 0.3))
    tracked = before + after
    result = settled(
        own_redis.url, receiver, tracked, 60, "every task registered before and after the crash"
    )
    print("\n" + result.report())
    assert result.table == {"delivered": 40}
    assert result.duplicate_event_ids == []
    # Recovered without a restart of the process.
    assert all(w.process.poll() is None for w in workers), [w.output()[-2000:] for w in workers]


@pytest.mark.parametrize(
    "fault", [Fault.SERVER_ERROR, Fault.RATE_LIMITED, Fault.RATE_LIMITED_EMPTY, Fault.SLOW,
              Fault.BROKEN_JSON]
)  # fmt: skip
def test_the_upstream_failing_for_a_while_delays_tasks_but_fails_none(
    fault: Fault,
    api: httpx.Client,
    client: dict[str, str],
    simulator: Simulator,
    receiver: Receiver,
    worker: WorkerProcess,
    redis_url: str,
) -> None:
    path = f"/hooks/{uuid.uuid4().hex}"
    tracked = successes(simulator, path, 15, 0.3)
    simulator.outage(fault, 2.0)
    tracked = register_all(api, client, receiver, tracked)
    result = settled(redis_url, receiver, tracked, 60, "recovery after the outage")
    assert result.table == {"delivered": 15}
    assert result.mismatched == []


def test_a_receiver_down_for_a_while_gets_everything_when_back(
    api: httpx.Client,
    client: dict[str, str],
    simulator: Simulator,
    worker: WorkerProcess,
    redis_url: str,
    settings: Settings,
) -> None:
    hooks = Receiver()
    port = free_port()
    hooks.url = f"http://127.0.0.1:{port}"
    path = "/hooks/outage"
    tracked = register_all(api, client, hooks, successes(simulator, path, 10, 0.1))

    def failed_attempts() -> int:
        listing = [api.get(f"/v1/tasks/{t.task_id}", headers=auth(client)).json() for t in tracked]
        return sum(len(d["attempts"]) for view in listing for s in view["subscriptions"]
                   for d in s["deliveries"])  # fmt: skip

    # Refused attempts until the origin's circuit opens; then the deliveries wait, spending
    # no attempts, and a probe finds the receiver back.
    wait_for(lambda: failed_attempts() >= settings.breaker_failures, 30, "refused attempts")
    with ServerThread(hooks.app(), port=port):
        result = settled(redis_url, hooks, tracked, 30, "the deliveries to arrive")
    assert result.table == {"delivered": 10}
    assert len(hooks.received) == 10  # each once, on its schedule


def test_a_redis_outage_longer_than_every_retry_window_loses_nothing(
    own_redis: EmbeddedRedis,
    settings: Settings,
    simulator: Simulator,
    receiver: Receiver,
    start_api: Callable[[Settings], httpx.Client],
    start_worker: Callable[[Settings], WorkerProcess],
) -> None:
    settings = dataclasses.replace(settings, redis_url=own_redis.url)
    client = create_client(own_redis.url)
    api = start_api(settings)
    worker = start_worker(settings)
    path = f"/hooks/{uuid.uuid4().hex}"
    tracked = register_all(api, client, receiver, successes(simulator, path, 20, 2.0))
    wait_for(lambda: len(receiver.accepted(path)) >= 1, 20, "the first deliveries")
    own_redis.kill()
    time.sleep(LONG_OUTAGE)  # the fault itself, not a wait for something to happen
    own_redis.start()
    result = settled(own_redis.url, receiver, tracked, 90, "every task after the long outage")
    assert result.table == {"delivered": 20}, result.report()
    assert result.duplicate_event_ids == []
    assert worker.process.poll() is None, worker.output()[-3000:]  # recovered in place


def test_full_memory_mid_run_refuses_registrations_and_repeats_no_new_delivery(
    own_redis: EmbeddedRedis,
    settings: Settings,
    simulator: Simulator,
    receiver: Receiver,
    start_api: Callable[[Settings], httpx.Client],
    start_worker: Callable[[Settings], WorkerProcess],
) -> None:
    """`maxmemory` reached with `noeviction` (the shipped policy): Redis refuses every write.
    A registration answers 503 and stores nothing; an attempt whose answer came while memory
    was full is recorded once there is room, or (past its lease) sent again under the same
    webhook-id: only deliveries already sent may repeat, never one first sent after."""
    settings = dataclasses.replace(settings, redis_url=own_redis.url)
    client = create_client(own_redis.url)
    api = start_api(settings)
    worker = start_worker(settings)
    path = f"/hooks/{uuid.uuid4().hex}"
    receiver.hold(path, 0.3)  # attempts are in flight when memory runs out
    tracked = register_all(api, client, receiver, successes(simulator, path, 30, 0.5))
    wait_for(lambda: len(receiver.at(path)) >= 1, 20, "the first attempts in flight")
    with redis.Redis.from_url(own_redis.url) as conn:
        conn.config_set("maxmemory", 1)  # below what is used: every write is refused
        late = simulator.script(duration=0.1).task_id
        refused = api.post(
            "/v1/tasks", headers=auth(client), json={"task_id": late, "callback_url": receiver.url}
        )
        assert refused.status_code == 503, refused.text
        assert conn.exists(keys.HOME.task(late)) == 0
        wait_for(lambda: "OOM" in worker.output(), 20, "the worker to meet a refused write")
        freed_at = time.time()
        conn.config_set("maxmemory", 0)
    result = settled(own_redis.url, receiver, tracked, 60, "every task once memory is free")
    assert result.table == {"delivered": 30}, result.report()
    assert result.duplicate_event_ids == []
    first_sent: dict[str, float] = {}
    sent_twice = set()
    for hit in receiver.at(path):
        webhook_id = hit.headers["webhook-id"]
        if webhook_id in first_sent:
            sent_twice.add(webhook_id)
        first_sent.setdefault(webhook_id, hit.at)
    assert all(first_sent[i] < freed_at for i in sent_twice)
