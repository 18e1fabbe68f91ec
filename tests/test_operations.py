"""Operational events (issue 25): `delivery.exhausted` and `destination.disabled` in the
client's feed and, where it asks, as webhooks to its operational subscription; noted in the
same step as what they announce, announced once (`tracker.core.operations`)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.support import Trip, auth, create_client, run, wait_for
from tracker.core import operations
from tracker.core.events import event_id
from tracker.core.records import Attempt, Delivery, DeliveryState, EventType
from tracker.devtools.receiver import Receiver
from tracker.settings import Settings
from tracker.store import keys
from tracker.store.deliveries import stage_new
from workers.announce import announce_waiting
from workers.context import WorkerContext


def test_a_note_names_what_happened_and_reads_back() -> None:
    note = operations.exhausted_note("cli_a", "msg_b", 2)
    assert operations.parse(note.member) == note
    assert note.event_type is EventType.DELIVERY_EXHAUSTED
    # The event id is derived: the same happening, the same id; another round, another.
    assert note.event_id == operations.exhausted_note("cli_a", "msg_b", 2).event_id
    assert note.event_id != operations.exhausted_note("cli_a", "msg_b", 3).event_id
    disabled = operations.parse("disabled cli_a https://x.example:443 1770000000.5")
    assert disabled == operations.disabled_note("cli_a", "https://x.example:443", "1770000000.5")
    assert disabled is not None and disabled.event_type is EventType.DESTINATION_DISABLED
    for foreign in ("", "exhausted a b", "other a b c", "exhausted a b c d"):
        assert operations.parse(foreign) is None


def test_the_bodies_say_what_ran_out_and_what_was_disabled() -> None:
    dead = Delivery(
        id="msg_x", subscription_id="sub_y", task_id="veo3.1-fast:1-a",
        event_type=EventType.COMPLETED, body=b"{}", state=DeliveryState.DEAD, attempts=8,
        next_attempt_at=0.0, created_at=0.0,
    )  # fmt: skip
    last = Attempt(at=1770000000.0, status_code=500, error=None, latency_ms=3.0)
    body = json.loads(operations.exhausted_body(dead, last, "https://h.example/in", 1770000001.0))
    assert body["type"] == "delivery.exhausted"
    assert body["data"] == {
        "delivery_id": "msg_x", "task_id": "veo3.1-fast:1-a", "subscription_id": "sub_y",
        "event_type": "video.completed", "callback_url": "https://h.example/in", "attempts": 8,
        "last_attempt": {"at": "2026-02-02T02:40:00.000Z", "status_code": 500, "error": None},
    }  # fmt: skip
    figures = {"disabled_at": "1770000000.0", "failing_since": "1769500000.0", "last_error": "503"}
    body = json.loads(operations.disabled_body("https://h.example:443", figures, 1770000001.0))
    assert body["type"] == "destination.disabled"
    assert body["data"]["origin"] == "https://h.example:443"
    assert body["data"]["disabled_at"] == "2026-02-02T02:40:00.000Z"
    assert body["data"]["last_error"] == "503" and body["data"]["last_success_at"] is None


def feed_of(trip: Trip, client: dict[str, str], kind: str) -> list[dict[str, Any]]:
    page = trip.api.get("/v1/events", headers=auth(client), params={"type": kind})
    assert page.status_code == 200, page.text
    return page.json()["data"]  # type: ignore[no-any-return]


@pytest.mark.slow
def test_exhausted_and_disabled_go_to_the_feed_and_the_operational_webhook(
    settings: Settings, launch: Callable[..., Trip], refusing: Receiver, redis_url: str
) -> None:
    trip = launch(
        dataclasses.replace(
            settings, disable_after=0.6, breaker_failures=100,
            delivery_schedule=(0.2, 0.2, 0.2, 0.2, 0.2),
        )
    )  # fmt: skip
    headers = auth(trip.client)
    ops_url = trip.receiver.url + trip.path + "/ops"
    assert trip.api.get("/v1/operational-webhook", headers=headers).status_code == 404
    set_up = trip.api.put(
        "/v1/operational-webhook", headers=headers, json={"callback_url": ops_url}
    )
    assert set_up.status_code == 200, set_up.text
    assert set_up.json()["events"] == ["delivery.exhausted", "destination.disabled"]
    assert trip.api.get("/v1/operational-webhook", headers=headers).json() == set_up.json()
    task = trip.script()
    body = {"task_id": task.task_id, "callback_url": refusing.url + "/down"}
    assert trip.api.post("/v1/tasks", headers=headers, json=body).status_code == 201

    def announced() -> list[dict[str, Any]] | None:
        hits = trip.receiver.accepted(trip.path + "/ops")
        found = [Webhook(trip.client["webhook_secret"]).verify(h.body, h.headers) for h in hits]
        return found if {e["type"] for e in found} >= {"destination.disabled"} else None

    events = wait_for(announced, 30, "the operational webhooks")
    disabled = [e for e in events if e["type"] == "destination.disabled"]
    assert len(disabled) == 1 and disabled[0]["data"]["origin"] == refusing.url
    # Disabled, the delivery waits (pending) rather than run out: once enabled and still
    # refused, it runs out and is announced as exhausted.
    trip.api.post("/v1/destinations/enable", headers=headers, json={"origin": refusing.url})
    events = wait_for(
        lambda: (found := announced() or []) and
        any(e["type"] == "delivery.exhausted" for e in found) and found,
        30, "delivery.exhausted",
    )  # fmt: skip
    exhausted = [e for e in events if e["type"] == "delivery.exhausted"]
    dead = trip.view(task.task_id)["subscriptions"][0]["deliveries"][0]
    assert len(exhausted) == 1 and exhausted[0]["data"]["delivery_id"] == dead["id"]
    assert exhausted[0]["data"]["task_id"] == task.task_id
    assert exhausted[0]["data"]["last_attempt"]["status_code"] == 500
    # The feed holds both, the exhausted one filed under its task.
    in_feed = feed_of(trip, trip.client, "delivery.exhausted")
    assert [e["task_id"] for e in in_feed] == [task.task_id]
    assert len(feed_of(trip, trip.client, "destination.disabled")) == 1
    # The operational webhook's own delivery is the client's, in its records like any other.
    hit = trip.receiver.accepted(trip.path + "/ops")[0]
    own = trip.api.get(f"/v1/deliveries/{hit.headers['webhook-id']}", headers=headers)
    assert own.status_code == 200 and own.json()["callback_url"] == ops_url
    # Another client sees none of it.
    other = create_client(redis_url, "other")
    assert feed_of(trip, other, "delivery.exhausted") == []
    assert trip.api.get("/v1/operational-webhook", headers=auth(other)).status_code == 404
    assert (
        trip.api.get(f"/v1/deliveries/{hit.headers['webhook-id']}", headers=auth(other)).status_code
        == 404
    )
    assert trip.api.delete("/v1/operational-webhook", headers=headers).status_code == 204
    assert trip.api.delete("/v1/operational-webhook", headers=headers).status_code == 404


def test_bad_operational_settings_are_refused(trip: Trip) -> None:
    headers = auth(trip.client)
    url = trip.receiver.url + trip.path

    def put(body: Any) -> int:
        return trip.api.put("/v1/operational-webhook", headers=headers, json=body).status_code

    assert put({"callback_url": url, "events": ["video.completed"]}) == 422
    assert put({"callback_url": url, "events": []}) == 422
    assert put({"callback_url": "ftp://x"}) == 422
    assert put({"events": ["delivery.exhausted"]}) == 422
    assert put({"callback_url": url, "surprise": 1}) == 422
    # A task's subscription cannot ask for operational events.
    task = trip.script()
    refused = trip.api.post(
        "/v1/tasks", headers=headers,
        json={"task_id": task.task_id, "callback_url": url, "events": ["delivery.exhausted"]},
    )  # fmt: skip
    assert refused.status_code == 422 and "delivery.exhausted" in refused.text
    assert put({"callback_url": url, "events": ["destination.disabled"]}) == 200


def test_a_noted_event_left_by_a_crash_is_announced_once(settings: Settings) -> None:
    """A worker that died between an attempt's record and its announcement left a note:
    announcers racing for it (the sweeper, another worker) announce it once."""

    async def body(ctx: WorkerContext, _peers: object, parts: Any) -> None:
        store = ctx["store"]
        now = time.time()
        ops = await store.shards[0].operations.subscribe(
            parts.client.id, "http://hooks.test/ops", [EventType.DELIVERY_EXHAUSTED], now
        )
        sub_id = "sub_crashed"
        dead = Delivery(
            id=event_id(sub_id, EventType.COMPLETED), subscription_id=sub_id,
            task_id="veo3.1-fast:1-crash", event_type=EventType.COMPLETED, body=b"{}",
            state=DeliveryState.PENDING, attempts=0, next_attempt_at=now, created_at=now,
            origin="http://hooks.test:80", client_id=parts.client.id,
        )  # fmt: skip
        async with store.redis.pipeline(transaction=True) as pipe:
            stage_new(pipe, keys.HOME, [dead], seq=1, now=now, feed=store.shards[0].tasks.feed)
            await pipe.execute()
        last = Attempt(at=now, status_code=503, error=None, latency_ms=1.0)
        # The record step alone (the worker dies before announcing).
        recorded = await store.shards[0].deliveries.record_attempt(
            dead, last, state=DeliveryState.DEAD, next_attempt_at=None
        )
        assert recorded
        assert await store.redis.zcard(keys.HOME.OPERATIONS) == 1
        counts = await asyncio.gather(
            *(announce_waiting(store.shards[0], now + 1) for _ in range(4))
        )
        assert sum(counts) == 1
        assert await store.redis.zcard(keys.HOME.OPERATIONS) == 0
        entries = await store.redis.xrange(keys.HOME.client_events(parts.client.id))
        types = [fields[b"type"] for _, fields in entries]
        assert types.count(b"delivery.exhausted") == 1
        outgoing = await store.redis.lrange(keys.HOME.subscription_deliveries(ops.id), 0, -1)
        assert len(outgoing) == 1
        made = await store.shards[0].deliveries.get(outgoing[0].decode())
        assert made is not None and made.state is DeliveryState.PENDING
        assert json.loads(made.body)["data"]["delivery_id"] == dead.id
        # Its own running out announces nothing more (no loop of operational events).
        await store.shards[0].deliveries.record_attempt(
            made, last, state=DeliveryState.DEAD, next_attempt_at=None
        )
        assert await store.redis.zcard(keys.HOME.OPERATIONS) == 0

    run(settings, body)
