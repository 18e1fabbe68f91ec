"""Attempts that explain themselves (issue 25): each attempt keeps the request it sent and
what the receiver answered (status, headers, the start of the body, the time to each step),
`GET /v1/deliveries/{id}` shows them, a redeliver keeps the earlier rounds, and the records
stay bounded."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest
import redis

from tests.support import Trip, auth, create_client, wait_for
from tracker.core import delivery
from tracker.settings import Settings

pytestmark = pytest.mark.slow


def delivery_of(trip: Trip, task_id: str) -> dict[str, Any]:
    view = trip.view(task_id)
    return view["subscriptions"][0]["deliveries"][0]  # type: ignore[no-any-return]


def test_each_attempt_keeps_the_request_and_the_answer(
    trip: Trip, worker: object, redis_url: str
) -> None:
    trip.receiver.script(trip.path, 500)  # refused once, with a body saying why; then 204
    task = trip.script()
    trip.register(task.task_id)
    trip.settled(task.task_id)
    found = delivery_of(trip, task.task_id)
    shown = trip.api.get(f"/v1/deliveries/{found['id']}", headers=auth(trip.client))
    assert shown.status_code == 200
    event = shown.json()
    assert event["task_id"] == task.task_id and event["state"] == "delivered"
    refused, accepted = event["attempts"]
    assert refused["status_code"] == 500 and accepted["status_code"] == 204
    assert refused["request"]["url"] == trip.receiver.url + trip.path
    assert refused["request"]["headers"]["webhook-id"] == found["id"]
    assert refused["answer"]["body"] == '{"refused": 500}'
    assert ["x-receiver", "tracker-devtools"] in refused["answer"]["headers"]
    timings = refused["timings"]
    assert timings["first_byte_ms"] is not None and timings["total_ms"] >= timings["first_byte_ms"]
    assert timings["connect_ms"] is not None  # the first POST made its connection
    # The task view shows the same attempts.
    assert found["attempts"] == event["attempts"]
    # Another client's delivery answers as one that does not exist.
    other = create_client(redis_url, "other")
    assert trip.api.get(f"/v1/deliveries/{found['id']}", headers=auth(other)).status_code == 404
    assert trip.api.get("/v1/deliveries/msg_nope", headers=auth(trip.client)).status_code == 404


def test_a_redeliver_keeps_the_earlier_rounds(trip: Trip, worker: object) -> None:
    task = trip.script()
    trip.register(task.task_id)
    first = trip.settled(task.task_id)
    delivery_id = first["subscriptions"][0]["deliveries"][0]["id"]
    again = trip.api.post(f"/v1/tasks/{task.task_id}/redeliver", headers=auth(trip.client))
    assert again.status_code == 202

    def both_rounds() -> list[dict[str, Any]] | None:
        shown = trip.api.get(f"/v1/deliveries/{delivery_id}", headers=auth(trip.client)).json()
        return shown["attempts"] if len(shown["attempts"]) == 2 else None

    attempts = wait_for(both_rounds, 20, "the redelivered attempt")
    assert [a["round"] for a in attempts] == [0, 1]


def test_without_recording_answers_an_attempt_keeps_its_status_only(
    settings: Settings, launch: Callable[..., Trip]
) -> None:
    trip = launch(dataclasses.replace(settings, record_answers=False))
    task = trip.script()
    trip.register(task.task_id)
    trip.settled(task.task_id)
    (attempt,) = delivery_of(trip, task.task_id)["attempts"]
    assert attempt["status_code"] == 204
    assert attempt["request"] is None and attempt["answer"] is None
    assert attempt["timings"]["first_byte_ms"] is None


def test_what_an_attempt_keeps_of_an_answer_is_bounded() -> None:
    body = ("é" * 3000).encode() + b"\xff\xfe"
    kept = delivery.body_excerpt(body)
    assert len(kept.encode("utf-8", "replace")) <= delivery.MAX_BODY_KEPT + 3
    assert delivery.body_excerpt(b"ok\xffno") == "ok\ufffdno"
    many = [(f"X-H{n}", "v" * 2000) for n in range(100)]
    headers = delivery.headers_excerpt(many)
    assert len(headers) == delivery.MAX_HEADERS_KEPT
    assert headers[0] == ["x-h0", "v" * delivery.MAX_HEADER_VALUE]
    assert delivery.headers_excerpt([("N" * 300, "v")])[0][0] == "n" * delivery.MAX_HEADER_NAME


def test_a_receiver_that_answers_megabytes_costs_the_record_4_kib(
    trip: Trip, worker: object, redis_url: str
) -> None:
    # The webhook receiver fixture answers briefly; the bound is the sender's read, tested
    # here against a path that answers with a large body.
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from tracker.server import ServerThread

    async def loud(request: object) -> Response:
        return Response(b"x" * (4 * 1024 * 1024), status_code=503)

    with ServerThread(Starlette(routes=[Route("/loud", loud, methods=["POST"])])) as server:
        task = trip.script()
        body = {"task_id": task.task_id, "callback_url": server.url + "/loud"}
        assert trip.api.post("/v1/tasks", headers=auth(trip.client), json=body).status_code == 201

        def attempted() -> dict[str, Any] | None:
            view = trip.view(task.task_id)
            attempts = view["subscriptions"][0]["deliveries"]
            return attempts[0]["attempts"][0] if attempts and attempts[0]["attempts"] else None

        attempt = wait_for(attempted, 20, "the first attempt")
    assert attempt["status_code"] == 503
    assert len(attempt["answer"]["body"]) == delivery.MAX_BODY_KEPT


def test_a_subscription_sends_its_own_headers_sealed_and_masked(
    trip: Trip, worker: object, redis_url: str
) -> None:
    secret = "Bearer receiver-token-0123456789"
    task = trip.script()
    made = trip.register(task.task_id, headers={"Authorization": secret, "X-Team": "video"})
    assert made["headers"] == {"authorization": "********", "x-team": "********"}
    trip.settled(task.task_id)
    (hit,) = trip.receiver.accepted(trip.path)
    assert hit.headers["authorization"] == secret and hit.headers["x-team"] == "video"
    assert hit.headers["webhook-id"]  # the tracker's own headers are still its own
    view = trip.view(task.task_id)
    assert secret not in json.dumps(view)  # masked in the task, the attempt's request too
    attempt = view["subscriptions"][0]["deliveries"][0]["attempts"][0]
    assert attempt["request"]["headers"]["authorization"] == "********"
    db = redis.Redis.from_url(redis_url)
    try:  # sealed at rest
        assert not any(
            secret.encode() in b"".join(db.hgetall(key).values())
            for key in db.scan_iter(match="qrt:sub:*", _type="hash")
        )
    finally:
        db.close()


@pytest.mark.parametrize(
    "headers",
    [
        {"webhook-signature": "v1,forged"}, {"Host": "internal"}, {"Content-Length": "1"},
        {"Transfer-Encoding": "chunked"}, {"Connection": "close"}, {"X-A": "a\r\nX-B: b"},
        {"bad name": "x"}, {"X-Long": "v" * 2000},
        {f"X-{n}": "v" for n in range(11)},
    ],
)  # fmt: skip
def test_headers_the_tracker_or_the_connection_own_are_refused(
    trip: Trip, headers: dict[str, str]
) -> None:
    task = trip.script()
    refused = trip.register(task.task_id, expect=422, headers=headers)
    assert "headers" in refused["detail"]
