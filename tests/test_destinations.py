"""Destinations (issue 25): each of a client's callback origins with its state and how its
attempts went over the last hour and day; the figures' arithmetic directly, then the API and
the dashboard over a real worker."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import httpx
import pytest

from tests.support import Trip, auth, create_client, signed_in, wait_for
from tracker.core import destinations
from tracker.core.destinations import DestinationState
from tracker.devtools.receiver import Receiver
from tracker.settings import Settings

HOUR = 3600.0


def figures_for(now: float, per_hour: dict[int, tuple[int, int, int]]) -> dict[str, str]:
    """A figures hash as RELEASE_SLOT writes it: hours ago -> (ok, failed, total ms)."""
    raw: dict[str, str] = {}
    current = int(now // HOUR)
    for ago, (ok, failed, ms) in per_hour.items():
        hour = current - ago
        slot = str(hour % 24)
        raw.update({f"{slot}:h": str(hour), f"{slot}:ok": str(ok), f"{slot}:fail": str(failed),
                    f"{slot}:ms": str(ms)})  # fmt: skip
    return raw


def test_the_figures_of_the_last_hour_and_day() -> None:
    now = 1_000 * HOUR + 0.25 * HOUR  # a quarter into the current hour
    raw = figures_for(now, {0: (10, 0, 1000), 1: (4, 4, 800), 5: (1, 1, 200)})
    hourly = destinations.hours(raw, now)
    assert len(hourly) == 24 and hourly[-1].ok == 10 and hourly[-2].failed == 4
    last_hour = destinations.window(hourly, now, 1)
    # The current hour whole, and three quarters of the one before.
    assert (last_hour.attempts, last_hour.failed) == (16, 3)
    day = destinations.window(hourly, now, 24)
    assert (day.attempts, day.failed) == (20, 5)
    assert day.success_rate == 0.75 and day.latency_ms == 100.0
    # A slot that holds another day's figures counts for nothing.
    stale = figures_for(now - 24 * HOUR, {0: (99, 99, 9)})
    assert destinations.window(destinations.hours(stale, now), now, 24).attempts == 0
    assert destinations.window(destinations.hours({}, now), now, 1).success_rate is None


def test_the_state_of_a_destination() -> None:
    assert destinations.state_of("closed", None) is DestinationState.HEALTHY
    assert destinations.state_of("closed", 12.0) is DestinationState.FAILING
    assert destinations.state_of("open", 12.0) is DestinationState.OPEN
    assert destinations.state_of("half_open", None) is DestinationState.OPEN


@pytest.mark.slow
def test_each_destination_shows_how_it_went(
    settings: Settings,
    launch: Callable[..., Trip],
    refusing: Receiver,
    redis_url: str,
) -> None:
    trip = launch(dataclasses.replace(settings, delivery_schedule=(0.05, 0.05)))
    good, bad = trip.script(), trip.script()
    trip.register(good.task_id)
    body = {"task_id": bad.task_id, "callback_url": refusing.url + "/hooks"}
    assert trip.api.post("/v1/tasks", headers=auth(trip.client), json=body).status_code == 201
    trip.settled(good.task_id)
    wait_for(lambda: len(refusing.at("/hooks")) == 3, 20, "the refused schedule")

    def shown() -> dict[str, dict[str, object]] | None:
        found = trip.api.get("/v1/destinations", headers=auth(trip.client)).json()
        by_origin = {d["origin"]: d for d in found["destinations"]}
        # Both, once the refused schedule's last attempt is recorded too.
        done = refusing.url in by_origin and by_origin[refusing.url]["last_day"]["failed"] == 3
        return by_origin if len(by_origin) == 2 and done else None

    by_origin = wait_for(shown, 20, "both destinations")
    healthy, failing = by_origin[trip.receiver.url], by_origin[refusing.url]
    assert healthy["state"] == "healthy" and healthy["last_error"] is None
    assert healthy["last_hour"] == {
        "attempts": 1, "failed": 0, "success_rate": 1.0,
        "latency_ms": healthy["last_hour"]["latency_ms"],  # type: ignore[index]
    }  # fmt: skip
    assert failing["state"] in {"failing", "open"} and failing["last_error"] == "500"
    assert failing["failing_since"] is not None and failing["last_success_at"] is None
    assert failing["last_day"]["failed"] == 3  # type: ignore[index]
    assert sum(h["failed"] for h in failing["hours"]) == 3  # type: ignore[attr-defined]
    # Another client sees none of them.
    other = create_client(redis_url, "other")
    seen = trip.api.get("/v1/destinations", headers=auth(other)).json()
    assert seen == {"destinations": []}
    # The dashboard's page shows them, with a chart of the day.
    opened: list[httpx.Client] = []
    try:
        page = signed_in(opened, str(trip.api.base_url), trip.client["api_key"])
        text = page.get("/ui/destinations").text
        assert (refusing.url in text and ">failing<" in text) or ">open<" in text
        assert "<svg" in text and "last error <code>500</code>" in text
    finally:
        for browser in opened:
            browser.close()


@pytest.mark.slow
def test_a_destination_is_recovered_and_one_delivery_resent(
    settings: Settings,
    launch: Callable[..., Trip],
    refusing: Receiver,
    redis_url: str,
) -> None:
    trip = launch(dataclasses.replace(settings, delivery_schedule=(0.05,)))
    tasks = [trip.script() for _ in range(3)]
    for task in tasks:
        body = {"task_id": task.task_id, "callback_url": refusing.url + "/down"}
        assert trip.api.post("/v1/tasks", headers=auth(trip.client), json=body).status_code == 201

    def dead() -> list[str] | None:
        states = [
            d for t in tasks for s in trip.view(t.task_id)["subscriptions"]
            for d in s["deliveries"] if d["state"] == "dead"
        ]  # fmt: skip
        return [d["id"] for d in states] if len(states) == 3 else None

    ids = wait_for(dead, 20, "three dead deliveries")
    since = "2020-01-01T00:00:00Z"
    recover = {"origin": refusing.url, "since": since, "dry_run": True}
    counted = trip.api.post("/v1/destinations/recover", headers=auth(trip.client), json=recover)
    assert counted.json() == {"found": 3, "more": False}
    # Another client recovers nothing of this one's.
    other = create_client(redis_url, "other")
    theirs = trip.api.post("/v1/destinations/recover", headers=auth(other), json=recover)
    assert theirs.json()["found"] == 0
    refusing.default_status = 204  # the receiver is back
    recover["dry_run"] = False
    sent = trip.api.post("/v1/destinations/recover", headers=auth(trip.client), json=recover)
    assert sent.status_code == 202 and sorted(sent.json()["deliveries"]) == sorted(ids)
    recovery = sent.json()["recovery"]

    def delivered() -> bool:
        shown = trip.api.get(f"/v1/recoveries/{recovery}", headers=auth(trip.client)).json()
        return shown["deliveries"] == {"delivered": 3}

    wait_for(delivered, 20, "the recovered deliveries")
    # Recovering again finds nothing more to send: none failed since.
    again = trip.api.post("/v1/destinations/recover", headers=auth(trip.client), json=recover)
    assert again.json()["found"] == 0
    assert trip.api.get(f"/v1/recoveries/{recovery}", headers=auth(other)).status_code == 404
    # One delivery, resent: a new round, delivered again.
    one = trip.api.post(f"/v1/deliveries/{ids[0]}/resend", headers=auth(trip.client))
    assert one.status_code == 202 and one.json() == {"delivery": ids[0], "was": "delivered"}
    assert trip.api.post(f"/v1/deliveries/{ids[0]}/resend", headers=auth(other)).status_code == 404

    def rounds() -> list[int] | None:
        attempts = trip.api.get(f"/v1/deliveries/{ids[0]}", headers=auth(trip.client)).json()
        found = [a["round"] for a in attempts["attempts"] if a["status_code"] == 204]
        return found if len(found) == 2 else None

    assert wait_for(rounds, 20, "the resent delivery") == [1, 2]
    bad = {"origin": "ftp://nowhere", "since": since}
    assert (
        trip.api.post("/v1/destinations/recover", headers=auth(trip.client), json=bad).status_code
        == 422
    )


@pytest.mark.slow
def test_a_destination_failing_without_a_break_is_disabled_until_enabled(
    settings: Settings, launch: Callable[..., Trip], refusing: Receiver
) -> None:
    # Failing for 0.5 s without a break disables it (five days by default).
    trip = launch(
        dataclasses.replace(
            settings, disable_after=0.5, breaker_failures=100,
            delivery_schedule=(0.2, 0.2, 0.2, 0.2, 0.2, 0.2),
        )
    )  # fmt: skip
    first = trip.script()
    body = {"task_id": first.task_id, "callback_url": refusing.url + "/down"}
    assert trip.api.post("/v1/tasks", headers=auth(trip.client), json=body).status_code == 201

    def state() -> str | None:
        found = trip.api.get("/v1/destinations", headers=auth(trip.client)).json()
        return found["destinations"][0]["state"] if found["destinations"] else None

    wait_for(lambda: state() == "disabled", 20, "the destination to be disabled")
    refused = len(refusing.at("/down"))
    # A new event for it waits: nothing is sent to a disabled destination.
    later = trip.script()
    body = {"task_id": later.task_id, "callback_url": refusing.url + "/down"}
    assert trip.api.post("/v1/tasks", headers=auth(trip.client), json=body).status_code == 201
    wait_for(lambda: trip.view(later.task_id)["state"] == "completed", 20, "the later task")
    later_event = trip.view(later.task_id)["subscriptions"][0]["deliveries"][0]
    assert later_event["state"] == "pending" and later_event["attempts"] == []
    assert len(refusing.at("/down")) == refused  # nothing went while it was disabled
    shown = trip.api.get("/v1/destinations", headers=auth(trip.client)).json()["destinations"]
    assert shown[0]["waiting"] == 2  # the first task's delivery and the later one's
    opened: list[httpx.Client] = []
    try:  # the dashboard shows it disabled, with a button to enable it
        page = signed_in(opened, str(trip.api.base_url), trip.client["api_key"])
        text = page.get("/ui/destinations").text
        assert ">disabled<" in text and "Enable: send what waits" in text
        assert "<dt>deliveries waiting</dt><dd>2</dd>" in text
        # Its own page lists what waits, each with its task and last answer.
        one = page.get("/ui/destination", params={"origin": refusing.url}).text
        assert "Deliveries waiting (2)" in one and later.task_id in one and first.task_id in one
        assert "none yet" in one and "500" in one  # the later one was never tried
        assert page.get("/ui/destination", params={"origin": "http://x:1"}).status_code == 404
    finally:
        for browser in opened:
            browser.close()
    refusing.default_status = 204  # its receiver is back
    enabled = trip.api.post(
        "/v1/destinations/enable", headers=auth(trip.client), json={"origin": refusing.url}
    )
    assert enabled.status_code == 200 and enabled.json()["requeued"] >= 1
    wait_for(lambda: refusing.accepted("/down"), 20, "the waiting webhook, once enabled")
    assert state() == "healthy"

    def waiting() -> int:
        found = trip.api.get("/v1/destinations", headers=auth(trip.client)).json()
        return int(found["destinations"][0]["waiting"])

    wait_for(lambda: waiting() == 0, 20, "nothing left waiting once delivered")
