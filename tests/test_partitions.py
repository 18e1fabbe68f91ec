"""The records spread over partitions (TRACKER_PARTITIONS, issue 26): where each client's
records live, the one step that crosses partitions (a shared-key task's owner), one worker
claiming from every partition in turn, and a count that cannot change under a deployment.

On one Redis here, where partitions are only key prefixes; the tests marked `cluster` run the
end-to-end, stream and crash tests on a cluster with three partitions (tests/support.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import uuid
from collections import Counter
from collections.abc import Callable

import httpx
import pytest
import redis
from click.testing import CliRunner
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from tests.support import WorkerProcess, auth, create_client, wait_for
from tracker.cli import main
from tracker.core.ids import tracking_id
from tracker.devtools.receiver import Receiver
from tracker.devtools.scenarios import Scenario
from tracker.devtools.simulator import Simulator
from tracker.settings import Settings
from tracker.store import Store, keys
from tracker.store.connection import connect

PARTITIONS = 3


def slot_of(tag: str) -> int:
    return key_slot(("{" + tag + "}").encode())


@pytest.mark.parametrize("count", [2, 3, 6, 12, 256])
def test_partition_tags_sit_in_the_middle_of_equal_runs_of_slots(count: int) -> None:
    tags = keys.partition_tags(count)
    assert len(set(tags)) == count and keys.HOME_TAG not in tags
    step = REDIS_CLUSTER_HASH_SLOTS / count
    for index, tag in enumerate(tags):
        assert index * step + step / 4 <= slot_of(tag) < index * step + 3 * step / 4
    assert keys.partition_tags(count) == tags  # fixed: every process agrees
    assert keys.partition_tags(1) == [keys.HOME_TAG]  # one: the layout before partitions


@pytest.mark.parametrize(("primaries", "count"), [(3, 3), (3, 6), (3, 12), (4, 4), (6, 12)])
def test_a_multiple_of_the_primaries_puts_as_many_partitions_on_each(
    primaries: int, count: int
) -> None:
    """Primaries serving equal runs of slots, as `redis-cli --cluster create` assigns them."""
    run = REDIS_CLUSTER_HASH_SLOTS // primaries
    owners = Counter(min(slot_of(tag) // run, primaries - 1) for tag in keys.partition_tags(count))
    assert sorted(owners.values()) == [count // primaries] * primaries


def test_clients_spread_evenly_and_always_to_the_same_partition() -> None:
    ids = [f"cli_{uuid.UUID(int=random.Random(n).getrandbits(128)).hex}" for n in range(3000)]
    spread = Counter(keys.partition_of(client_id, PARTITIONS) for client_id in ids)
    assert all(900 <= spread[p] <= 1100 for p in range(PARTITIONS)), spread
    assert [keys.partition_of(i, PARTITIONS) for i in ids] == [
        keys.partition_of(i, PARTITIONS) for i in ids
    ]
    with pytest.raises(ValueError, match="1 or more"):
        keys.partition_tags(0)


def clients_in_each_partition(redis_url: str) -> list[dict[str, str]]:
    """One client per partition, made as an operator makes them, partition 0's first."""
    found: dict[int, dict[str, str]] = {}
    for n in range(60):
        client = create_client(redis_url, f"c{n}", partitions=PARTITIONS)
        found.setdefault(keys.partition_of(client["id"], PARTITIONS), client)
        if len(found) == PARTITIONS:
            return [found[p] for p in range(PARTITIONS)]
    raise AssertionError("no client in some partition after 60 tries")


@pytest.fixture
def partitioned(settings: Settings) -> Settings:
    return dataclasses.replace(settings, partitions=PARTITIONS)


@pytest.mark.slow
def test_each_clients_records_live_in_its_partition_and_nowhere_else(
    partitioned: Settings,
    start_api: Callable[[Settings], httpx.Client],
    start_worker: Callable[[Settings], WorkerProcess],
    simulator: Simulator,
    receiver: Receiver,
    redis_url: str,
) -> None:
    clients = clients_in_each_partition(redis_url)
    api = start_api(partitioned)
    start_worker(partitioned)
    tasks = []
    for client in clients:
        task = simulator.script(duration=0.2)
        body = {"task_id": task.task_id, "callback_url": f"{receiver.url}/hooks/{task.task_id}"}
        assert api.post("/v1/tasks", headers=auth(client), json=body).status_code == 201
        tasks.append(task.task_id)
    for task_id in tasks:
        wait_for(lambda: receiver.accepted(f"/hooks/{task_id}"), 20, f"{task_id}'s webhook")  # noqa: B023
    for client, task_id in zip(clients, tasks, strict=True):
        view = api.get(f"/v1/tasks/{task_id}", headers=auth(client)).json()
        assert view["state"] == "completed"
        events = api.get("/v1/events", headers=auth(client)).json()["data"]
        assert [e["task_id"] for e in events] == [task_id]  # its feed, its event only
    tags = keys.partition_tags(PARTITIONS)
    with redis.Redis.from_url(redis_url) as conn:
        for index, task_id in enumerate(tasks):
            where = [tag for tag in tags if conn.exists(keys.Keyspace(tag).task(task_id))]
            assert where == [tags[index]]
            mine = keys.Keyspace(tags[index])
            assert conn.zcard(mine.client_tasks(clients[index]["id"])) == 1
        # What the deployment shares stays under the home tag: the clients and their keys.
        assert conn.scard(keys.HOME.CLIENTS) == len(clients_listed(conn))
        for tag in tags:
            assert not conn.exists(keys.Keyspace(tag).CLIENTS)
            assert not list(conn.scan_iter(match=keys.Keyspace(tag).api_key("*")))


def clients_listed(conn: redis.Redis) -> set[bytes]:
    return set(conn.smembers(keys.HOME.CLIENTS))


@pytest.mark.slow
def test_a_shared_key_task_stays_its_first_registrants_across_partitions(
    partitioned: Settings,
    start_api: Callable[[Settings], httpx.Client],
    start_worker: Callable[[Settings], WorkerProcess],
    simulator: Simulator,
    receiver: Receiver,
    redis_url: str,
) -> None:
    """Another partition never sees the first registrant's task record: the owner claimed
    under the home tag is what keeps the second client out (`tracker.store.owners`). A crash
    between the claim and the registration (the claim written, the task not) leaves the id
    to its claimant only."""
    _, alice, eve = clients_in_each_partition(redis_url)
    api = start_api(partitioned)
    start_worker(partitioned)

    def register(client: dict[str, str], task_id: str, who: str) -> None:
        body = {"task_id": task_id, "callback_url": f"{receiver.url}/hooks/{who}-{task_id}"}
        answer = api.post("/v1/tasks", headers=auth(client), json=body)
        assert answer.status_code == 201, answer.text

    def final(who: str, task_id: str) -> dict[str, object]:
        path = f"/hooks/{who}-{task_id}"
        wait_for(lambda: receiver.accepted(path), 20, f"{who}'s webhook")
        event: dict[str, object] = receiver.accepted(path)[-1].json()
        return event

    task = simulator.script(duration=0.2)
    register(alice, task.task_id, "alice")
    assert final("alice", task.task_id)["type"] == "video.completed"
    register(eve, task.task_id, "eve")
    denied = final("eve", task.task_id)
    assert denied["type"] == "video.failed"
    assert denied["data"]["video_url"] is None  # type: ignore[index]
    assert denied["data"]["error"]["code"] == "upstream_unknown_task"  # type: ignore[index]

    # Alice's registration of another task cut short after its first step: the claim alone.
    cut = simulator.script(duration=0.2)

    async def claim_only() -> None:
        pool = connect(redis_url)
        store = Store(pool, partitions=[pool] * PARTITIONS)
        try:
            tid = tracking_id(cut.task_id, "")
            assert await store.owners.claim(tid, alice["id"], 3600) == alice["id"]
        finally:
            await pool.aclose()

    asyncio.run(claim_only())
    register(eve, cut.task_id, "eve")
    assert final("eve", cut.task_id)["data"]["video_url"] is None  # type: ignore[index]
    register(alice, cut.task_id, "alice")  # her retry goes on as if the first had succeeded
    assert final("alice", cut.task_id)["type"] == "video.completed"


@pytest.mark.slow
def test_one_worker_claims_from_every_partition_in_turn(
    partitioned: Settings,
    start_api: Callable[[Settings], httpx.Client],
    start_worker: Callable[[Settings], WorkerProcess],
    simulator: Simulator,
    receiver: Receiver,
    redis_url: str,
) -> None:
    """A partition full of due polls never starves another's: the claim starts one partition
    further each time."""
    busy, quiet, _ = clients_in_each_partition(redis_url)
    narrow = dataclasses.replace(partitioned, worker_concurrency=2, registration_rate=1000)
    api = start_api(narrow)
    crowd = [simulator.script(scenario=Scenario.NEVER_ENDS).task_id for _ in range(60)]
    for task_id in crowd:  # polled until their deadline, for the feed only
        assert api.post("/v1/tasks", headers=auth(busy), json={"task_id": task_id}).is_success
    start_worker(narrow)
    polled = lambda: sum(simulator.requests(t) for t in crowd)  # noqa: E731
    wait_for(lambda: polled() >= 60, 20, "the busy partition's polls")
    task = simulator.script(duration=0.1)
    body = {"task_id": task.task_id, "callback_url": f"{receiver.url}/hooks/{task.task_id}"}
    assert api.post("/v1/tasks", headers=auth(quiet), json=body).status_code == 201
    wait_for(lambda: receiver.accepted(f"/hooks/{task.task_id}"), 15, "the quiet one's webhook")


@pytest.mark.slow
def test_a_task_shared_across_partitions_is_polled_by_each(
    partitioned: Settings,
    start_api: Callable[[Settings], httpx.Client],
    start_worker: Callable[[Settings], WorkerProcess],
    simulator: Simulator,
    receiver: Receiver,
    redis_url: str,
) -> None:
    """TRACKER_SHARED_TASKS: clients of two partitions on one task each get its result; each
    partition polls its own record of it (the documented cost of sharing across them)."""
    _, alice, bob = clients_in_each_partition(redis_url)
    api = start_api(dataclasses.replace(partitioned, shared_tasks=True))
    start_worker(partitioned)
    task = simulator.script(duration=0.3)
    for who, client in (("alice", alice), ("bob", bob)):
        body = {"task_id": task.task_id, "callback_url": f"{receiver.url}/hooks/{who}"}
        assert api.post("/v1/tasks", headers=auth(client), json=body).status_code == 201
    for who in ("alice", "bob"):
        wait_for(lambda: receiver.accepted(f"/hooks/{who}"), 20, f"{who}'s webhook")  # noqa: B023
        assert receiver.accepted(f"/hooks/{who}")[-1].json()["type"] == "video.completed"
    views = [api.get(f"/v1/tasks/{task.task_id}", headers=auth(c)).json() for c in (alice, bob)]
    assert sum(view["polls"] for view in views) == simulator.requests(task.task_id)


def test_a_process_with_another_partition_count_is_refused(redis_url: str) -> None:
    create_client(redis_url, "first", partitions=PARTITIONS)  # the count is recorded
    result = CliRunner().invoke(
        main, ["clients", "list"], env={"REDIS_URL": redis_url, "TRACKER_PARTITIONS": "1"}
    )
    assert result.exit_code != 0
    assert "TRACKER_PARTITIONS is 1" in result.output and "set it to 3" in result.output
    again = CliRunner().invoke(
        main, ["clients", "list"], env={"REDIS_URL": redis_url, "TRACKER_PARTITIONS": "3"}
    )
    assert again.exit_code == 0, again.output


def test_a_client_made_or_revoked_halfway_is_reached_by_no_key(
    partitioned: Settings, start_api: Callable[[Settings], httpx.Client], redis_url: str
) -> None:
    """Creating a client writes its record in its partition, then its key's entry under the
    home tag; revoking marks the record first, then deletes the entry. What a crash between
    the steps leaves: a record no key reaches and no list shows, or a key that reaches a
    revoked client: refused either way."""
    made, revoked = (create_client(redis_url, n, partitions=PARTITIONS) for n in ("m", "r"))
    count = PARTITIONS
    with redis.Redis.from_url(redis_url) as conn:
        # The creation cut short: the record alone (its key's entry and index entry never made).
        key_hash = conn.hget(keys.Keyspace(tag_of(made["id"], count)).client(made["id"]),
                             "key_hash")  # fmt: skip
        assert key_hash is not None
        conn.delete(keys.HOME.api_key(key_hash.decode()))
        conn.srem(keys.HOME.CLIENTS, made["id"])
        # The revocation cut short: the record marked, the key's entry left.
        mine = keys.Keyspace(tag_of(revoked["id"], count))
        conn.hset(mine.client(revoked["id"]), "revoked", "1")
        assert conn.exists(keys.HOME.api_key(conn.hget(mine.client(revoked["id"]),
                                                       "key_hash").decode()))  # fmt: skip
    api = start_api(partitioned)
    for client in (made, revoked):
        assert api.get("/v1/tasks", headers=auth(client)).status_code == 401
    listed = CliRunner().invoke(
        main, ["clients", "list", "--json"],
        env={"REDIS_URL": redis_url, "TRACKER_PARTITIONS": str(count)},
    )  # fmt: skip
    assert listed.exit_code == 0, listed.output
    assert made["id"] not in listed.output and revoked["id"] in listed.output


def tag_of(client_id: str, count: int) -> str:
    return keys.partition_tags(count)[keys.partition_of(client_id, count)]


def test_a_partition_that_lost_its_epoch_is_noticed_like_the_home(
    partitioned: Settings, start_api: Callable[[Settings], httpx.Client], redis_url: str
) -> None:
    """Each partition keeps a copy of the epoch (on a cluster, a shard of its own may lose its
    data while the home's keeps it): the API refuses while one is gone, and serves again once
    it is back."""
    client = create_client(redis_url, "c", partitions=PARTITIONS)
    api = start_api(partitioned)
    assert api.get("/readyz").status_code == 200
    with redis.Redis.from_url(redis_url) as conn:
        copies = [keys.Keyspace(tag).IDENTITY for tag in keys.partition_tags(PARTITIONS)]
        epoch = conn.get(keys.HOME.IDENTITY)
        assert epoch is not None and all(conn.get(copy) == epoch for copy in copies)
        conn.delete(copies[1])  # that shard's Redis came back empty
        wait_for(lambda: api.get("/readyz").status_code == 503, 10, "the loss noticed")
        assert api.get("/v1/tasks", headers=auth(client)).json()["type"].endswith("data_lost")
        conn.set(copies[1], epoch)  # its data restored
    wait_for(lambda: api.get("/readyz").status_code == 200, 10, "serving again")
