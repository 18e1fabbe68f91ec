"""Each client's own QuickRouter keys: who can read which task (README, Trust model)."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import uuid
from collections.abc import Callable

import httpx
import pytest
import redis
import redis.asyncio
from click.testing import CliRunner

from tests.support import WorkerProcess, auth, create_client, wait_for
from tracker.cli import main
from tracker.core import upstream_keys
from tracker.core.upstream_keys import MAX_PER_CLIENT, SHARED, choose, fingerprint
from tracker.devtools.receiver import Receiver
from tracker.devtools.simulator import Simulator
from tracker.errors import ValidationFailed
from tracker.settings import Settings
from tracker.store.ratelimit import UpstreamBucket

A, B = "qrk_" + "a" * 16, "qrk_" + "b" * 16


@pytest.mark.parametrize(
    ("requested", "own", "shared", "chosen"),
    [(None, [], True, SHARED), (None, [A], True, A), (None, [A], False, A), (A, [A, B], True, A),
     (B, [A, B], False, B)],
)  # fmt: skip
def test_the_key_a_registration_polls_with(
    requested: str | None, own: list[str], shared: bool, chosen: str
) -> None:
    assert choose(requested, own, shared_allowed=shared) == chosen


@pytest.mark.parametrize(
    ("requested", "own", "shared"),
    [(B, [A], True), (A, [], True), (None, [A, B], True), (None, [], False)],
)
def test_a_key_that_cannot_be_used_is_refused(
    requested: str | None, own: list[str], shared: bool
) -> None:
    with pytest.raises(ValidationFailed):
        choose(requested, own, shared_allowed=shared)


def test_a_fingerprint_names_a_key_without_showing_it() -> None:
    key = "sk-" + secrets.token_urlsafe(24)
    assert fingerprint(key) == fingerprint(key) != fingerprint(key + "x")
    assert key not in fingerprint(key) and fingerprint(key).startswith("qrk_")
    for bad in ["", "   ", "x" * 513, "sk-\n1", "ключ"]:
        with pytest.raises(ValidationFailed):
            upstream_keys.checked_key(bad)


def add_key(api: httpx.Client, client: dict[str, str], key: str) -> str:
    answer = api.post("/v1/upstream-keys", headers=auth(client), json={"key": key})
    assert answer.status_code == 201, answer.text
    assert key not in answer.text
    return str(answer.json()["fingerprint"])


def final_event(receiver: Receiver, path: str) -> dict[str, object]:
    hit = wait_for(lambda: receiver.accepted(path), 20, f"the webhook at {path}")[0]
    return dict(hit.json())


def test_two_clients_with_their_own_keys_on_one_task_id_each_see_only_their_own(
    api: httpx.Client,
    simulator: Simulator,
    receiver: Receiver,
    worker: WorkerProcess,
    redis_url: str,
) -> None:
    key_a, key_b = f"sk-a-{uuid.uuid4().hex}", f"sk-b-{uuid.uuid4().hex}"
    simulator.keys |= {key_a, key_b}
    alice, bob = create_client(redis_url, "alice"), create_client(redis_url, "bob")
    add_key(api, alice, key_a)
    add_key(api, bob, key_b)
    task = simulator.script(owner=key_a, duration=0.3)  # created with Alice's key
    for client, path in ((alice, "/hooks/alice"), (bob, "/hooks/bob")):
        answer = api.post(
            "/v1/tasks",
            headers=auth(client),
            json={"task_id": task.task_id, "callback_url": f"{receiver.url}{path}-{task.task_id}"},
        )
        assert answer.status_code == 201, answer.text  # two tasks: one per key
    mine = final_event(receiver, f"/hooks/alice-{task.task_id}")
    theirs = final_event(receiver, f"/hooks/bob-{task.task_id}")
    assert mine["type"] == "video.completed"
    assert theirs["type"] == "video.failed"  # Bob's key does not see Alice's task upstream
    assert theirs["data"]["error"]["code"] == "upstream_unknown_task"  # type: ignore[index]
    assert theirs["data"]["video_url"] is None  # type: ignore[index]
    for client, state in ((alice, "completed"), (bob, "failed")):
        view = api.get(f"/v1/tasks/{task.task_id}", headers=auth(client)).json()
        assert view["state"] == state
        assert len(view["subscriptions"]) == 1
    for text in (api.get("/v1/upstream-keys", headers=auth(alice)).text, worker.output()):
        assert key_a not in text and key_b not in text
    with redis.Redis.from_url(redis_url) as conn:  # nothing in Redis holds a key in clear
        for name in conn.scan_iter(count=1000):
            kind = conn.type(name)
            if kind == b"hash":
                values = b" ".join(conn.hvals(name))
            elif kind == b"string":
                values = conn.get(name) or b""
            else:
                continue
            assert key_a.encode() not in values and key_b.encode() not in values, name


def test_under_the_shared_key_a_task_belongs_to_the_client_that_registered_it_first(
    settings: Settings,
    start_api: Callable[[Settings], httpx.Client],
    simulator: Simulator,
    receiver: Receiver,
    worker: WorkerProcess,
    redis_url: str,
) -> None:
    """Eve names Alice's task id under the deployment's shared key: she gets what an id
    that does not exist gets (201, then `upstream_unknown_task`), never Alice's video."""
    api = start_api(settings)
    alice, eve = create_client(redis_url, "alice"), create_client(redis_url, "eve")
    task = simulator.script(duration=0.5)
    unknown = f"veo3.1-fast:1770350082-{uuid.uuid4().hex[:10]}"  # never created upstream
    answers = {}
    for who, client, task_id in (("alice", alice, task.task_id), ("eve", eve, task.task_id),
                                 ("eve-unknown", eve, unknown)):  # fmt: skip
        body = {"task_id": task_id, "callback_url": f"{receiver.url}/hooks/{who}-{task.task_id}"}
        answers[who] = api.post("/v1/tasks", headers=auth(client), json=body)
        assert answers[who].status_code == 201, answers[who].text
    assert answers["eve"].json().keys() == answers["eve-unknown"].json().keys()
    assert final_event(receiver, f"/hooks/alice-{task.task_id}")["type"] == "video.completed"
    for path in (f"/hooks/eve-{task.task_id}", f"/hooks/eve-unknown-{task.task_id}"):
        event = final_event(receiver, path)
        assert event["type"] == "video.failed"
        assert event["data"]["error"]["code"] == "upstream_unknown_task"  # type: ignore[index]
        assert event["data"]["video_url"] is None  # type: ignore[index]
    eves = api.get(f"/v1/tasks/{task.task_id}", headers=auth(eve)).json()
    assert eves["state"] == "failed" and eves["upstream"] != {"status": "completed"}
    assert len(eves["subscriptions"]) == 1  # her own only
    opted_in = start_api(dataclasses.replace(settings, shared_tasks=True))
    late = {"task_id": task.task_id, "callback_url": f"{receiver.url}/hooks/late"}
    assert opted_in.post("/v1/tasks", headers=auth(eve), json=late).status_code == 201
    shared = opted_in.get(f"/v1/tasks/{task.task_id}", headers=auth(eve)).json()
    assert shared["state"] == "completed"  # opted in: the one task, Alice's result


def test_only_the_operator_or_the_client_itself_sets_a_key_and_nobody_reads_it_back(
    api: httpx.Client, redis_url: str
) -> None:
    client = create_client(redis_url, "carol")
    key = f"sk-c-{uuid.uuid4().hex}"
    added = CliRunner().invoke(
        main, ["clients", "set-upstream-key", client["id"]], input=key + "\n",
        env={"REDIS_URL": redis_url},
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert added.output.strip() == fingerprint(key) and key not in added.output
    listed = api.get("/v1/upstream-keys", headers=auth(client)).json()
    assert listed == {"keys": [{"fingerprint": fingerprint(key)}]}
    assert api.post("/v1/upstream-keys", json={"key": key}).status_code == 401
    assert api.post("/v1/upstream-keys", headers=auth(client), json={"key": ""}).status_code == 422
    gone = api.delete(f"/v1/upstream-keys/{fingerprint(key)}", headers=auth(client))
    assert gone.status_code == 204
    assert api.get("/v1/upstream-keys", headers=auth(client)).json() == {"keys": []}
    assert (
        api.delete(f"/v1/upstream-keys/{fingerprint(key)}", headers=auth(client)).status_code == 404
    )


def test_a_client_keeps_a_bounded_number_of_keys(api: httpx.Client, redis_url: str) -> None:
    client = create_client(redis_url, "hoarder")
    keys_ = [f"sk-h{n}-{uuid.uuid4().hex}" for n in range(MAX_PER_CLIENT + 1)]
    for key in keys_[:-1]:
        answer = api.post("/v1/upstream-keys", headers=auth(client), json={"key": key})
        assert answer.status_code == 201
    refused = api.post("/v1/upstream-keys", headers=auth(client), json={"key": keys_[-1]})
    assert refused.status_code == 422
    assert refused.json()["type"] == "urn:qrtracker:problem:limit_reached"
    again = api.post("/v1/upstream-keys", headers=auth(client), json={"key": keys_[0]})
    assert again.status_code == 201  # a key it keeps already can be sent again
    listed = api.get("/v1/upstream-keys", headers=auth(client)).json()["keys"]
    assert len(listed) == MAX_PER_CLIENT


def test_each_key_has_a_quota_of_its_own(redis_url: str) -> None:
    async def run() -> list[float]:
        conn = redis.asyncio.Redis.from_url(redis_url)
        mine, theirs = f"sk-{uuid.uuid4().hex}", f"sk-{uuid.uuid4().hex}"
        waits = [
            await UpstreamBucket(conn, mine, rate=0.01, burst=1).take(),
            await UpstreamBucket(conn, mine, rate=0.01, burst=1).take(),  # spent: wait
            await UpstreamBucket(conn, theirs, rate=0.01, burst=1).take(),  # untouched
        ]
        await conn.aclose()
        return waits

    first, again, other = asyncio.run(run())
    assert first == 0.0 and again > 1 and other == 0.0
