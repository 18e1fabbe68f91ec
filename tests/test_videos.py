"""`POST /v1/videos`: create at QuickRouter and track in one call, with Idempotency-Key."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis

from tests.support import WorkerProcess, auth, create_client, wait_for
from tracker.api import idempotency
from tracker.core.upstream import Created, CreateRefused, read_create
from tracker.devtools.receiver import Receiver
from tracker.devtools.simulator import Simulator
from tracker.settings import Settings
from tracker.store import keys
from tracker.store.idempotency import digest


@pytest.mark.parametrize(
    ("status", "body", "meaning"),
    [(200, b'{"id":"veo3.1-fast:1-a","status":"pending"}', Created("veo3.1-fast:1-a")),
     (401, b'{"error":{"message":"bad key"}}', CreateRefused(401, "bad key")),
     (429, b"", CreateRefused(429, "QuickRouter answered 429")),
     (200, b'{"status":"pending"}', None), (200, b'{"id":"a b"}', None), (200, b"NaN", None),
     (502, b"{}", None)],
)  # fmt: skip
def test_what_a_create_answer_means(status: int, body: bytes, meaning: object) -> None:
    assert read_create(status, body) == meaning


def video(receiver: Receiver, path: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "veo3.1-fast", "prompt": "a cat on a skateboard", "aspect_ratio": "16:9",
        "simulate": {"duration": 0.3}, "callback_url": receiver.url + path,
        "metadata": {"order": 7}, **extra,
    }  # fmt: skip


def test_create_and_track_in_one_call(
    api: httpx.Client,
    client: dict[str, str],
    simulator: Simulator,
    receiver: Receiver,
    worker: WorkerProcess,
) -> None:
    path = f"/hooks/{uuid.uuid4().hex}"
    before = simulator.creates
    answer = api.post("/v1/videos", headers=auth(client), json=video(receiver, path))
    assert answer.status_code == 201, answer.text
    task_id = answer.json()["task_id"]
    assert answer.json()["subscription"]["task_id"] == task_id
    assert answer.headers["location"] == f"/v1/tasks/{task_id}"
    assert simulator.creates == before + 1
    hit = wait_for(lambda: receiver.accepted(path), 20, "the webhook")[0]
    event = hit.json()
    assert (event["type"], event["data"]["task_id"]) == ("video.completed", task_id)
    assert event["data"]["metadata"] == {"order": 7}  # the tracker's fields stay here


def test_an_upstream_refusal_comes_back_with_its_status_and_message(
    api: httpx.Client, redis_url: str, simulator: Simulator, receiver: Receiver
) -> None:
    client = create_client(redis_url, "stranger")
    key = f"sk-unknown-{uuid.uuid4().hex}"  # a key QuickRouter does not know
    assert api.post("/v1/upstream-keys", headers=auth(client), json={"key": key}).status_code == 201
    before = simulator.creates
    answer = api.post("/v1/videos", headers=auth(client), json=video(receiver, "/hooks/no"))
    assert answer.status_code == 401
    problem = answer.json()
    assert problem["type"] == "urn:qrtracker:problem:upstream_refused"
    assert problem["detail"] and key not in answer.text
    assert simulator.creates == before
    assert api.get("/v1/tasks", headers=auth(client)).json()["tasks"] == []


def test_fifty_concurrent_creates_with_one_idempotency_key_make_one_video(
    api: httpx.Client,
    client: dict[str, str],
    simulator: Simulator,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(simulator, "create_delay", 0.3)  # the first is still running meanwhile
    body = video(receiver, "/hooks/idem")
    headers = {**auth(client), "idempotency-key": f"order-{uuid.uuid4().hex}"}
    before = simulator.creates

    def send(_: int) -> httpx.Response:
        return api.post("/v1/videos", headers=headers, json=body)

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(send, range(50)))
    assert simulator.creates == before + 1
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {201, 409} and 201 in statuses, statuses
    task_ids = {a.json()["task_id"] for a in answers if a.status_code == 201}
    assert len(task_ids) == 1
    again = api.post("/v1/videos", headers=headers, json=body)  # later: the first answer again
    assert again.status_code == 201 and again.json()["task_id"] in task_ids
    assert again.headers.get("idempotent-replayed") == "true"
    other = api.post("/v1/videos", headers=headers, json={**body, "prompt": "a dog"})
    assert other.status_code == 422
    assert other.json()["type"] == "urn:qrtracker:problem:idempotency_key_reused"
    assert simulator.creates == before + 1


def intent_left_by_a_crash(
    redis_url: str, client: dict[str, str], key: str, body: dict[str, Any], **fields: str
) -> None:
    """The record a request killed mid-way leaves behind (the API process died there)."""
    request = idempotency.fingerprint("POST /v1/videos", body)
    with redis.Redis.from_url(redis_url) as conn:
        conn.hset(
            keys.HOME.idempotency(client["id"], digest(key)), mapping={"request": request, **fields}
        )


def test_a_crash_between_create_and_registration_is_finished_by_the_retry(
    api: httpx.Client,
    client: dict[str, str],
    simulator: Simulator,
    receiver: Receiver,
    redis_url: str,
) -> None:
    created = simulator.script(duration=30)  # QuickRouter made it; the API died right after
    body = video(receiver, "/hooks/crash")
    key = f"crash-{uuid.uuid4().hex}"
    intent_left_by_a_crash(
        redis_url, client, key, body, state="created", started_at="1", task_id=created.task_id
    )
    before = simulator.creates
    retry = api.post("/v1/videos", headers={**auth(client), "idempotency-key": key}, json=body)
    assert retry.status_code == 201, retry.text
    assert retry.json()["task_id"] == created.task_id  # registered, not created again
    assert simulator.creates == before
    view = api.get(f"/v1/tasks/{created.task_id}", headers=auth(client))
    assert view.status_code == 200


def test_a_crash_during_the_create_gets_a_clear_answer_and_no_second_video(
    api: httpx.Client,
    client: dict[str, str],
    simulator: Simulator,
    receiver: Receiver,
    redis_url: str,
) -> None:
    body = video(receiver, "/hooks/lost")
    key = f"lost-{uuid.uuid4().hex}"
    intent_left_by_a_crash(redis_url, client, key, body, state="started", started_at="1")
    before = simulator.creates
    retry = api.post("/v1/videos", headers={**auth(client), "idempotency-key": key}, json=body)
    assert retry.status_code == 409
    assert "may or may not have been created" in retry.json()["detail"]
    assert simulator.creates == before


def test_an_idempotency_key_on_a_registration_answers_the_first_answer_again(
    api: httpx.Client, client: dict[str, str], simulator: Simulator, receiver: Receiver
) -> None:
    body = {"task_id": simulator.script(duration=30).task_id, "callback_url": receiver.url}
    headers = {**auth(client), "idempotency-key": f"reg-{uuid.uuid4().hex}"}
    first = api.post("/v1/tasks", headers=headers, json=body)
    again = api.post("/v1/tasks", headers=headers, json=body)
    assert (first.status_code, again.status_code) == (201, 201)  # not 200: the first answer
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    other = api.post("/v1/tasks", headers=headers, json={**body, "metadata": {"x": 1}})
    assert other.status_code == 422
    bad = api.post("/v1/tasks", headers={**auth(client), "idempotency-key": "a b"}, json=body)
    assert bad.status_code == 422


def test_creates_are_metered_before_they_reach_quickrouter(
    settings: Settings,
    start_api: Callable[[Settings], httpx.Client],
    redis_url: str,
    simulator: Simulator,
    receiver: Receiver,
) -> None:
    """A create is billed upstream: one past the client's rate or its tracked-task limit is
    refused before QuickRouter sees it, and the key's bucket meters creates as it does polls."""
    api = start_api(dataclasses.replace(settings, registration_rate=2, live_tasks_per_client=3))
    client = create_client(redis_url)
    before = simulator.creates
    answers = [_create(api, client, receiver) for _ in range(6)]
    statuses = [a.status_code for a in answers]
    assert 429 in statuses, statuses  # more than 2 in one second
    assert simulator.creates - before == statuses.count(201)
    wait_for(lambda: _create(api, client, receiver).status_code == 422, 10, "the task limit")
    assert simulator.creates - before == 3  # the limit: 3 tracked, no fourth video
    assert len(api.get("/v1/tasks", headers=auth(client)).json()["tasks"]) == 3

    metered = start_api(dataclasses.replace(settings, upstream_rate=0.5, upstream_burst=1))
    other = create_client(redis_url, "metered")
    first = metered.post("/v1/videos", headers=auth(other), json=video(receiver, "/hooks/b"))
    assert first.status_code == 201, first.text
    started = time.monotonic()
    second = metered.post("/v1/videos", headers=auth(other), json=video(receiver, "/hooks/b"))
    assert second.status_code == 201 and time.monotonic() - started >= 1.0  # waited its token


def _create(api: httpx.Client, client: dict[str, str], receiver: Receiver) -> httpx.Response:
    return api.post("/v1/videos", headers=auth(client), json=video(receiver, "/hooks/m"))


def test_a_refused_registration_leaves_no_idempotency_record(
    settings: Settings,
    start_api: Callable[[Settings], httpx.Client],
    redis_url: str,
    simulator: Simulator,
    receiver: Receiver,
) -> None:
    """A registration refused (past the client's rate, or a limit) stores nothing, not even
    its Idempotency-Key: records cannot be made faster than registrations, and the same key
    works once the client may register again."""
    api = start_api(dataclasses.replace(settings, registration_rate=1, live_tasks_per_client=1))
    client = create_client(redis_url)
    first = api.post("/v1/tasks", headers=auth(client), json={
        "task_id": simulator.script(duration=30).task_id})  # fmt: skip
    assert first.status_code == 201
    keys_ = [f"k-{n}-{uuid.uuid4().hex}" for n in range(5)]
    for key in keys_:  # over the limit of one tracked task: 422 (or 429, over the rate)
        answer = api.post(
            "/v1/tasks", headers={**auth(client), "idempotency-key": key},
            json={"task_id": simulator.script(duration=30).task_id},
        )  # fmt: skip
        assert answer.status_code in {422, 429}, answer.text
    with redis.Redis.from_url(redis_url) as conn:
        records = conn.keys(keys.HOME.idempotency(client["id"], "*"))
    assert records == []
