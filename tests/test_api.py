"""The API against a real Redis: registration, reading, cancelling, errors, health."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import httpx
import pytest
import redis

from tests.support import auth, create_client
from tracker.embedded_redis import free_port
from tracker.settings import Settings
from tracker.store import keys

TASK = "veo3.1-fast:1770350082-trii1OXZc3"


def register(api: httpx.Client, client: dict[str, str], **body: Any) -> httpx.Response:
    payload = {"task_id": TASK, "callback_url": "https://hooks.example.com/qr", **body}
    return api.post("/v1/tasks", json=payload, headers=auth(client))


def stored_keys(redis_url: str) -> list[bytes]:
    """Every key but arq's and the identity every process writes at its start."""
    with redis.Redis.from_url(redis_url) as conn:
        return sorted(
            k
            for k in conn.keys("*")
            if not k.startswith(b"arq:") and k != keys.HOME.IDENTITY.encode()
        )


def test_register_creates_then_returns_the_same_subscription(
    api: httpx.Client, client: dict[str, str], redis_url: str
) -> None:
    first = register(api, client, metadata={"order": 42, "tags": ["a"]})
    assert first.status_code == 201
    sub = first.json()
    assert sub["task_id"] == TASK
    assert sub["metadata"] == {"order": 42, "tags": ["a"]}
    assert sub["events"] == ["video.completed", "video.failed", "video.timed_out"]
    assert first.headers["location"] == f"/v1/tasks/{TASK}"
    again = register(api, client, metadata={"order": 42, "tags": ["a"]})
    assert again.status_code == 200
    assert again.json()["id"] == sub["id"]
    with redis.Redis.from_url(redis_url) as conn:
        assert conn.zscore(keys.HOME.DUE_TASKS, TASK) is not None  # due for the pollers


def test_a_second_callback_is_a_second_subscription_on_one_task(
    api: httpx.Client, client: dict[str, str], redis_url: str
) -> None:
    a = register(api, client).json()
    b = register(api, client, callback_url="https://hooks.example.com/other").json()
    assert a["id"] != b["id"]
    with redis.Redis.from_url(redis_url) as conn:
        assert len(conn.hget(keys.HOME.task(TASK), "subs").split()) == 2
        assert conn.zcard(keys.HOME.DUE_TASKS) == 1  # one task to poll, for both


def test_read_shows_state_and_only_the_callers_subscriptions(
    api: httpx.Client, client: dict[str, str], redis_url: str
) -> None:
    other = create_client(redis_url, "other")
    register(api, client)
    register(api, other, callback_url="https://other.example.com/")
    body = api.get(f"/v1/tasks/{TASK}", headers=auth(client)).json()
    assert body["task_id"] == TASK
    assert body["state"] == "tracking"
    assert body["result"] is None
    assert [s["callback_url"] for s in body["subscriptions"]] == ["https://hooks.example.com/qr"]
    assert body["subscriptions"][0]["deliveries"] == []


def test_unknown_tasks_are_404_problems(api: httpx.Client, client: dict[str, str]) -> None:
    for response in (
        api.get("/v1/tasks/nope", headers=auth(client)),
        api.delete("/v1/tasks/nope", headers=auth(client)),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "urn:qrtracker:problem:not_found"


def test_delete_stops_tracking_when_the_last_subscription_goes(
    api: httpx.Client, client: dict[str, str], redis_url: str
) -> None:
    register(api, client)
    assert api.delete(f"/v1/tasks/{TASK}", headers=auth(client)).status_code == 204
    with redis.Redis.from_url(redis_url) as conn:
        assert conn.hget(keys.HOME.task(TASK), "state") == b"cancelled"
        assert conn.zscore(keys.HOME.DUE_TASKS, TASK) is None
    shown = api.get(f"/v1/tasks/{TASK}", headers=auth(client)).json()
    assert shown["state"] == "cancelled"
    assert shown["subscriptions"][0]["state"] == "cancelled"
    assert api.delete(f"/v1/tasks/{TASK}", headers=auth(client)).status_code == 404
    assert register(api, client).status_code == 201  # tracking again
    with redis.Redis.from_url(redis_url) as conn:
        assert conn.hget(keys.HOME.task(TASK), "state") == b"tracking"


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"authorization": "Bearer qrt_wrong"}, 401), ({"authorization": "Basic x"}, 401)],
)
def test_requests_without_a_valid_key_are_refused(
    api: httpx.Client, headers: dict[str, str], status: int, redis_url: str
) -> None:
    response = api.post(
        "/v1/tasks", json={"task_id": TASK, "callback_url": "https://x.example"}, headers=headers
    )
    assert response.status_code == status
    assert response.json()["type"] == "urn:qrtracker:problem:unauthorized"
    assert stored_keys(redis_url) == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_request"),
        (b"", 400, "invalid_request"),
        (b"[]", 422, "validation_failed"),
        (b'{"callback_url": "https://x.example"}', 422, "validation_failed"),
        (b'{"task_id": "t:1", "callback_url": ""}', 422, "validation_failed"),
        (b'{"task_id": "t:1", "callback_url": "ftp://x.example/"}', 422, "validation_failed"),
        (b'{"task_id": "t:1", "callback_url": "javascript:alert(1)"}', 422, "validation_failed"),
        (b'{"task_id": "t:1", "callback_url": "http:///nohost"}', 422, "validation_failed"),
        (b'{"task_id": "t 1", "callback_url": "https://x.example"}', 422, "validation_failed"),
        (b'{"task_id": "", "callback_url": "https://x.example"}', 422, "validation_failed"),
        (b'{"task_id": "t:1", "callback_url": "https://x.example", "metadata": [1]}', 422,
         "validation_failed"),
        (b'{"task_id": "t:1", "callback_url": "https://x.example", "events": ["video.x"]}', 422,
         "validation_failed"),
        (b'{"task_id": "t:1", "callback_url": "https://x.example", "extra": 1}', 422,
         "validation_failed"),
        (b'{"task_id": "t:1", "callback_url": "https://x.example", "metadata": {"a": "'
         + b"x" * 70_000 + b'"}}', 413, "payload_too_large"),
    ],
)  # fmt: skip
def test_bad_bodies_are_clear_problems_and_store_nothing(
    api: httpx.Client, client: dict[str, str], redis_url: str, body: bytes, status: int, code: str
) -> None:
    before = stored_keys(redis_url)
    response = api.post(
        "/v1/tasks", content=body, headers={**auth(client), "content-type": "application/json"}
    )
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == f"urn:qrtracker:problem:{code}"
    assert problem["status"] == status
    assert problem["detail"]
    assert stored_keys(redis_url) == before


def test_health_and_readiness(api: httpx.Client) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    assert api.get("/readyz").json() == {"status": "ready"}


def test_readiness_and_writes_answer_503_without_redis(
    settings: Settings, start_api: Any, client: dict[str, str]
) -> None:
    down = start_api(dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    ready = down.get("/readyz")
    assert ready.status_code == 503
    assert ready.headers["content-type"] == "application/problem+json"
    write = register(down, client)
    assert write.status_code == 503
    assert write.json()["type"] == "urn:qrtracker:problem:unavailable"


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


@pytest.mark.parametrize(
    "body",
    [
        {"task_id": "t" * 201, "callback_url": "https://x.example"},
        {"task_id": "t:1/2", "callback_url": "https://x.example"},
        {"task_id": "t:1\n", "callback_url": "https://x.example"},
        {"task_id": "t:1", "callback_url": "https://x.example/" + "a" * 2048},
        {"task_id": "t:1", "callback_url": "https://x.example", "metadata": {"a": "x" * 17_000}},
        {"task_id": "t:1", "callback_url": "https://x.example", "metadata": nested(9)},
        {"task_id": "t:1", "callback_url": "https://x.example", "events": []},
    ],
)
def test_limits_on_what_a_client_sends(
    api: httpx.Client, client: dict[str, str], redis_url: str, body: dict[str, Any]
) -> None:
    before = stored_keys(redis_url)
    response = api.post("/v1/tasks", json=body, headers=auth(client))
    assert response.status_code == 422, response.text
    assert response.json()["errors"]
    assert stored_keys(redis_url) == before


def test_metadata_at_the_limits_is_accepted(api: httpx.Client, client: dict[str, str]) -> None:
    response = register(api, client, metadata={"deep": nested(7), "text": "x" * 15_000})
    assert response.status_code == 201


def test_registrations_beyond_the_rate_get_429_with_retry_after(
    settings: Settings, start_api: Any, client: dict[str, str], redis_url: str
) -> None:
    api = start_api(dataclasses.replace(settings, registration_rate=3))
    first = time.time()
    answers = [
        api.post("/v1/tasks", headers=auth(client),
                 json={"task_id": f"veo3:1-{n}", "callback_url": "https://x.example/h"})
        for n in range(10)
    ]  # fmt: skip
    windows = int(time.time()) - int(first) + 1  # the one-second windows the calls spanned
    refused = [a for a in answers if a.status_code == 429]
    accepted = [a for a in answers if a.status_code == 201]
    assert len(refused) + len(accepted) == 10
    assert len(accepted) <= 3 * windows
    assert windows > 3 or refused  # ten calls in three seconds or less exceed 3 a second
    for answer in refused:
        assert answer.headers["retry-after"] == "1"
        assert answer.json()["type"] == "urn:qrtracker:problem:rate_limited"
    with redis.Redis.from_url(redis_url) as conn:
        assert len(conn.keys(keys.HOME.subscription("*"))) == len(accepted)


def test_listing_is_newest_first_with_a_cursor_and_a_state_filter(
    api: httpx.Client, client: dict[str, str]
) -> None:
    ids = [f"veo3.1-fast:1-list{n}" for n in range(5)]
    for task_id in ids:
        assert register(api, client, task_id=task_id).status_code == 201
    assert api.delete(f"/v1/tasks/{ids[1]}", headers=auth(client)).status_code == 204
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = api.get("/v1/tasks", params=params, headers=auth(client)).json()
        seen += [t["task_id"] for t in page["tasks"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    cancelled = api.get("/v1/tasks", params={"state": "cancelled"}, headers=auth(client)).json()
    assert [t["task_id"] for t in cancelled["tasks"]] == [ids[1]]
    tracking = api.get("/v1/tasks", params={"state": "tracking"}, headers=auth(client)).json()
    assert len(tracking["tasks"]) == 4


@pytest.mark.parametrize(
    "params", [{"state": "done"}, {"limit": "0"}, {"limit": "101"}, {"limit": "x"},
               {"cursor": "!!"}, {"cursor": "bmFu"}]
)  # fmt: skip
def test_bad_list_parameters_are_422(
    api: httpx.Client, client: dict[str, str], params: dict[str, str]
) -> None:
    response = api.get("/v1/tasks", params=params, headers=auth(client))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_redeliver_before_the_end_is_a_409(api: httpx.Client, client: dict[str, str]) -> None:
    register(api, client)
    response = api.post(f"/v1/tasks/{TASK}/redeliver", headers=auth(client))
    assert response.status_code == 409
    assert response.json()["type"] == "urn:qrtracker:problem:task_not_final"


def test_unknown_routes_and_methods_are_problems(api: httpx.Client) -> None:
    assert api.get("/nope").headers["content-type"] == "application/problem+json"
    assert api.put("/v1/tasks").status_code == 405
    assert api.put("/v1/tasks").json()["type"] == "urn:qrtracker:problem:method_not_allowed"


def test_a_task_registered_again_after_a_cancel_stays_due_for_a_stale_poller(
    api: httpx.Client, client: dict[str, str], redis_url: str
) -> None:
    import asyncio

    from tracker.store import Store
    from tracker.store.connection import connect

    register(api, client)
    assert api.delete(f"/v1/tasks/{TASK}", headers=auth(client)).status_code == 204
    register(api, client)  # tracked again

    async def stale_poller_forgets() -> None:
        pool = connect(redis_url)
        await (
            Store(pool).shards[0].polls.forget_due(TASK)
        )  # what a poller holding the cancelled record does
        await pool.aclose()

    asyncio.run(stale_poller_forgets())
    with redis.Redis.from_url(redis_url) as conn:
        assert conn.zscore(keys.HOME.DUE_TASKS, TASK) is not None
