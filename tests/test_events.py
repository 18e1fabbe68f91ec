"""The event feed (issue 14): `GET /v1/events`, the SSE stream, `?wait=` on a task, and
`qrtracker listen`, against real servers, a real Redis and real worker processes."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from httpx_sse import connect_sse
from standardwebhooks.webhooks import Webhook

from tests.support import ApiProcess, Trip, WorkerProcess, auth, create_client, wait_for
from tracker.api import create_app
from tracker.cli import main
from tracker.core.feed import FeedEvent, Filter, later, valid_cursor
from tracker.core.records import EventType
from tracker.devtools.receiver import Receiver
from tracker.embedded_redis import free_port
from tracker.server import ServerThread
from tracker.settings import Settings

FINAL = {"video.completed", "video.failed", "video.timed_out"}


def feed(api: httpx.Client, client: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    """Every event of the client's feed, page by page."""
    found: list[dict[str, Any]] = []
    after = ""
    while True:
        response = api.get(
            "/v1/events", headers=auth(client), params={"after": after, "limit": 7, **params}
        )
        assert response.status_code == 200, response.text
        page = response.json()
        found += page["data"]
        after = page["next_cursor"]
        if not page["has_more"]:
            return found


def ended(trip: Trip, task_id: str) -> dict[str, Any]:
    return wait_for(  # type: ignore[no-any-return]
        lambda: (view := trip.view(task_id))["state"] != "tracking" and view, 20, "the end"
    )


# -- the pure part ----------------------------------------------------------------------------


def test_cursors_and_filters() -> None:
    assert valid_cursor("1795931168538-0") and valid_cursor("0-0")
    for bad in (
        "",
        "-",
        "1-",
        "abc-1",
        "1-2-3",
        "99999999999999999999-0",
        " 1-0",
        "1-0\n",
        "1-0 ",
        "\u0661-0",
    ):
        assert not valid_cursor(bad), bad
    assert later("10-0", "9-5") and later("10-1", "10-0") and not later("10-0", "10-0")
    event = FeedEvent("5-0", "msg_x", EventType.COMPLETED, "t1", "sub_1", 3, b"{}")
    assert Filter().admits(event)
    assert Filter(frozenset({EventType.COMPLETED})).admits(event)
    assert not Filter(frozenset({EventType.FAILED})).admits(event)
    assert Filter(task_id="t1").admits(event) and not Filter(task_id="t2").admits(event)
    assert event.at == 0.005


# -- the feed -----------------------------------------------------------------------------------


@pytest.mark.cluster
def test_the_feed_holds_each_event_as_its_webhook_carries_it(
    trip: Trip, worker: WorkerProcess, redis_url: str
) -> None:
    trip.worker_polls()  # then a task of 1.2 s is seen running
    watched = trip.script(scenario="success", duration=1.2)
    trip.register(watched.task_id, events=["video.status_changed", "video.completed"])
    quiet = trip.script(scenario="fail_generation")
    answer = trip.api.post(
        "/v1/tasks", headers=auth(trip.client), json={"task_id": quiet.task_id}
    )  # no callback: the feed only
    assert answer.status_code == 201 and answer.json()["callback_url"] is None, answer.text
    trip.settled(watched.task_id)
    view = ended(trip, quiet.task_id)
    assert view["state"] == "failed"
    (sub,) = view["subscriptions"]
    assert sub["callback_url"] is None and sub["destination"] is None and sub["deliveries"] == []

    events = feed(trip.api, trip.client)
    cursors = [e["cursor"] for e in events]
    assert all(later(b, a) for a, b in itertools.pairwise(cursors))  # in order
    mine = [e for e in events if e["task_id"] == watched.task_id]
    assert [e["type"] for e in mine][-1] == "video.completed"
    assert {e["type"] for e in mine[:-1]} == {"video.status_changed"} and len(mine) >= 2
    seqs = [e["seq"] for e in mine]
    assert seqs == sorted(seqs) and seqs[0] < seqs[-1]
    # The final event: the very bytes and id of the webhook, signed by the client's secret.
    final = mine[-1]
    (hit,) = [h for h in trip.hits() if h.headers["webhook-id"] == final["id"]]
    assert final["body"].encode() == hit.body
    # Every event of the feed is a webhook the receiver got, and the other way round.
    assert {e["id"] for e in mine} == {h.headers["webhook-id"] for h in trip.hits()}
    verified = Webhook(trip.client["webhook_secret"]).verify(final["body"], final["headers"])
    assert verified["data"]["task_id"] == watched.task_id
    (quiet_event,) = [e for e in events if e["task_id"] == quiet.task_id]
    assert quiet_event["type"] == "video.failed"
    assert all(json.loads(h.body)["data"]["task_id"] == watched.task_id for h in trip.hits())

    # Filters, and a client that sees none of it.
    completed = feed(trip.api, trip.client, type="video.completed")
    assert [e["id"] for e in completed] == [final["id"]]
    assert [e["id"] for e in feed(trip.api, trip.client, task_id=quiet.task_id)] == [
        quiet_event["id"]
    ]
    both = feed(trip.api, trip.client, type="video.completed,video.failed")
    assert {e["id"] for e in both} == {final["id"], quiet_event["id"]}
    other = create_client(redis_url, "other")
    assert feed(trip.api, other) == []


def test_feed_parameters_are_checked(trip: Trip) -> None:
    headers = auth(trip.client)
    for params in ({"after": "yesterday"}, {"type": "video.done"}, {"limit": "0"}):
        response = trip.api.get("/v1/events", headers=headers, params=params)
        assert response.status_code == 422, (params, response.text)
    assert trip.api.get("/v1/events").status_code == 401
    assert (
        trip.api.get("/v1/events/stream", headers=headers, params={"after": "x"}).status_code == 422
    )
    task = trip.script(scenario="never_ends")
    trip.register(task.task_id)
    for wait in ("61", "-1", "1.5", "soon"):
        response = trip.api.get(f"/v1/tasks/{task.task_id}", headers=headers, params={"wait": wait})
        assert response.status_code == 422, (wait, response.text)


# -- long polls ---------------------------------------------------------------------------------


def test_wait_answers_when_the_task_ends_or_after_the_wait(
    trip: Trip, worker: WorkerProcess
) -> None:
    task = trip.script(scenario="success", duration=1.5)
    trip.register(task.task_id)
    started = time.monotonic()
    response = trip.api.get(
        f"/v1/tasks/{task.task_id}", headers=auth(trip.client), params={"wait": "30"}, timeout=40
    )
    returned = time.time()
    assert response.status_code == 200 and response.json()["state"] == "completed"
    assert time.monotonic() - started < 25
    ended_at = response.json()["updated_at"]
    lag = returned - datetime.fromisoformat(ended_at.replace("Z", "+00:00")).timestamp()
    assert lag < 2.0, lag  # woken by the final event, not by a look every few seconds

    never = trip.script(scenario="never_ends")
    trip.register(never.task_id)
    started = time.monotonic()
    response = trip.api.get(
        f"/v1/tasks/{never.task_id}", headers=auth(trip.client), params={"wait": "1"}
    )
    assert response.json()["state"] == "tracking"
    assert 1.0 <= time.monotonic() - started < 10


def test_streams_and_waits_per_client_are_bounded(
    settings: Settings, start_api: Callable[[Settings], httpx.Client], redis_url: str
) -> None:
    api = start_api(dataclasses.replace(settings, streams_per_client=1))
    client = create_client(redis_url)
    with connect_sse(api, "GET", "/v1/events/stream", headers=auth(client)) as first:
        assert first.response.status_code == 200
        events = first.iter_sse()  # kept: a dropped iterator closes the response
        ready = next(events)
        assert ready.event == "ready" and valid_cursor(ready.id)
        refused = api.get("/v1/events/stream", headers=auth(client))
        assert refused.status_code == 429 and refused.headers["retry-after"]
        assert refused.headers["content-type"].startswith("application/problem+json")
        other = create_client(redis_url, "other")  # another client's allowance is its own
        with connect_sse(api, "GET", "/v1/events/stream", headers=auth(other)) as theirs:
            assert theirs.response.status_code == 200
    # The first stream closed: its lease goes back, and a new stream is taken.
    wait_for(lambda: _opens(api, client), 10, "the closed stream's lease to be given back")


def test_a_stream_ends_once_its_client_is_revoked(
    settings: Settings, start_api: Callable[[Settings], httpx.Client], redis_url: str
) -> None:
    api = start_api(dataclasses.replace(settings, stream_heartbeat=0.2))
    client = create_client(redis_url)
    with connect_sse(api, "GET", "/v1/events/stream", headers=auth(client)) as stream:
        events = stream.iter_sse()
        assert next(events).event == "ready"
        result = CliRunner().invoke(
            main, ["clients", "revoke", client["id"]], env={"REDIS_URL": redis_url}
        )
        assert result.exit_code == 0, result.output
        ended = threading.Event()

        def drain() -> None:
            for _ in events:  # heartbeats are comments: nothing is yielded
                pass
            ended.set()

        threading.Thread(target=drain, daemon=True).start()
        assert ended.wait(10), "the stream went on after its client was revoked"


def _opens(api: httpx.Client, client: dict[str, str]) -> bool:
    with connect_sse(api, "GET", "/v1/events/stream", headers=auth(client)) as source:
        return source.response.status_code == 200


# -- real processes: two APIs, a worker, a cut stream, `listen` ---------------------------------


def read_stream(
    url: str,
    client: dict[str, str],
    last_id: str | None,
    take: int,
    into: list[dict[str, Any]],
    started: threading.Event | None = None,
) -> str:
    """Read `take` events (after `last_id`) from the stream at `url`, then cut the connection;
    the last event id read. `started` is set once the stream said where it starts."""
    headers = auth(client) | ({"last-event-id": last_id} if last_id else {})
    with (
        httpx.Client(base_url=url, timeout=httpx.Timeout(10, read=60)) as http,
        connect_sse(http, "GET", "/v1/events/stream", headers=headers) as source,
    ):
        assert source.response.status_code == 200
        cursor = last_id or ""
        for sse in source.iter_sse():
            cursor = sse.id
            if sse.event == "ready" and started is not None:
                started.set()
            if sse.event != "ready":
                into.append(json.loads(sse.data))
                if len(into) >= take:
                    break
    return cursor


@pytest.mark.slow
@pytest.mark.cluster
def test_a_stream_cut_and_resumed_on_another_api_gets_every_event_once_in_order(
    settings: Settings,
    redis_url: str,
    simulator: Any,
    receiver: Receiver,
    start_worker: Callable[[Settings], WorkerProcess],
    tmp_path: Path,
) -> None:
    client = create_client(redis_url)
    settings = dataclasses.replace(settings, registration_rate=1000)
    apis = [ApiProcess(settings, tmp_path / f"api-{n}.log") for n in range(2)]
    try:
        start_worker(settings)
        first: list[dict[str, Any]] = []
        ready = threading.Event()
        cut: list[str] = []

        def follow() -> None:
            cut.append(read_stream(apis[0].url, client, None, 10, first, ready))

        reader = threading.Thread(target=follow)
        reader.start()
        assert ready.wait(15)  # the stream starts "now": before the first task is registered
        tasks = []
        with httpx.Client(base_url=apis[1].url, timeout=10) as other_api:
            for n in range(30):
                task = simulator.script(scenario="success", duration=0.2 + n * 0.1)
                answer = other_api.post(
                    "/v1/tasks", headers=auth(client),
                    json={"task_id": task.task_id, "callback_url": receiver.url + f"/cut/{n}"},
                )  # fmt: skip
                assert answer.status_code == 201, answer.text
                tasks.append(task.task_id)
        reader.join(60)
        assert len(first) == 10 and cut
        rest: list[dict[str, Any]] = []
        read_stream(apis[1].url, client, cut[0], 20, rest)
        streamed = first + rest
        with httpx.Client(base_url=apis[1].url, timeout=10) as other_api:
            everything = feed(other_api, client)
        assert [e["cursor"] for e in streamed] == [e["cursor"] for e in everything]
        assert sorted(e["task_id"] for e in streamed) == sorted(tasks)  # each once
    finally:
        for api in apis:
            api.stop()


@pytest.mark.slow
def test_listen_forwards_signed_webhooks_and_resumes_where_it_stopped(
    trip: Trip, worker: WorkerProcess, tmp_path: Path
) -> None:
    local = trip.path + "/local"  # the developer's local receiver
    cursor_file = tmp_path / "listen.cursor"
    runs: list[tuple[subprocess.Popen[bytes], Path]] = []
    outputs: list[Any] = []

    def start(*extra: str) -> None:
        out = tmp_path / f"listen-{len(runs)}.out"
        outputs.append(out.open("wb"))
        env = {**os.environ, "QRTRACKER_API_KEY": trip.client["api_key"], "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            [sys.executable, "-m", "tracker.cli", "listen", "--api", str(trip.api.base_url),
             "--forward-to", trip.receiver.url + local, "--cursor-file", str(cursor_file),
             *extra],
            env=env, stdout=outputs[-1], stderr=subprocess.STDOUT,
        )  # fmt: skip
        runs.append((process, out))

    def stop() -> None:
        process, _ = runs[-1]
        process.terminate()
        process.wait(15)

    def end_tasks(count: int) -> list[str]:
        ids = []
        for _ in range(count):
            task = trip.script(scenario="success")
            trip.register(task.task_id)
            ids.append(task.task_id)
        for task_id in ids:
            trip.settled(task_id)
        return ids

    try:
        first = end_tasks(3)
        start("--after", "0-0")  # the first run: from the start of the feed
        wait_for(lambda: len(trip.receiver.accepted(local)) == 3, 30, "three forwarded")
        everything = feed(trip.api, trip.client)
        wait_for(lambda: cursor_file.exists() and cursor_file.read_text() == everything[-1][
            "cursor"], 10, "the cursor kept")  # fmt: skip
        stop()
        second = end_tasks(2)  # made while nobody listens
        start()  # resumes from the cursor file
        wait_for(lambda: len(trip.receiver.accepted(local)) == 5, 30, "two more forwarded")
        last = feed(trip.api, trip.client)[-1]["cursor"]
        # The line is printed after the receiver answers and before the cursor is kept.
        wait_for(lambda: cursor_file.read_text() == last, 10, "the second cursor kept")
        stop()
    finally:
        for process, _ in runs:
            if process.poll() is None:
                process.kill()
                process.wait()
        for output in outputs:
            output.close()
    forwarded = trip.receiver.accepted(local)
    verify = Webhook(trip.client["webhook_secret"]).verify
    events = [verify(hit.body, hit.headers) for hit in forwarded]  # raises unless signed
    forwarded_tasks = [e["data"]["task_id"] for e in events]  # each once, in the feed's order
    assert sorted(forwarded_tasks[:3]) == sorted(first)
    assert sorted(forwarded_tasks[3:]) == sorted(second)
    ids = [hit.headers["webhook-id"] for hit in forwarded]
    assert ids == [e["id"] for e in feed(trip.api, trip.client)]
    # The very webhook the receiver got from the tracker itself: same id, same bytes.
    direct = {h.headers["webhook-id"]: h.body for h in trip.receiver.accepted(trip.path)}
    assert all(direct[hit.headers["webhook-id"]] == hit.body for hit in forwarded)
    printed = "".join(out.read_text() for _, out in runs)
    assert printed.count("video.completed") == 5 and printed.count("-> 204") == 5


def run_listen(
    api_url: str, api_key: str, forward_to: str, cursor_file: Path, out: Path
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "QRTRACKER_API_KEY": api_key, "PYTHONUNBUFFERED": "1"}
    with out.open("wb") as log:  # the child writes to its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "tracker.cli", "listen", "--api", api_url,
             "--forward-to", forward_to, "--cursor-file", str(cursor_file)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


@pytest.mark.slow
def test_listen_stopped_before_any_event_resumes_from_where_it_started(
    trip: Trip, worker: WorkerProcess, tmp_path: Path
) -> None:
    """Started, stopped before any event came: the events made while it was stopped are
    forwarded by the next run (the `ready` cursor was kept at once)."""
    local, cursor_file = trip.path + "/local", tmp_path / "listen.cursor"
    args = (str(trip.api.base_url), trip.client["api_key"], trip.receiver.url + local)
    first = run_listen(*args, cursor_file, tmp_path / "first.out")
    try:
        wait_for(cursor_file.exists, 20, "the ready cursor kept")
    finally:
        first.terminate()
        first.wait(15)
    task = trip.script(scenario="success")
    trip.register(task.task_id)
    trip.settled(task.task_id)  # made while nobody listens
    second = run_listen(*args, cursor_file, tmp_path / "second.out")
    try:
        wait_for(lambda: trip.receiver.accepted(local), 30, "the missed event forwarded")
    finally:
        second.terminate()
        second.wait(15)
    assert trip.receiver.accepted(local)[0].json()["data"]["task_id"] == task.task_id


def test_listen_says_when_the_api_goes_and_comes_back_and_stops_on_a_refused_key(
    settings: Settings, client: dict[str, str], receiver: Receiver, tmp_path: Path
) -> None:
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    out = tmp_path / "listen.out"
    listener = run_listen(api_url, client["api_key"], receiver.url + "/l", tmp_path / "c", out)
    try:
        wait_for(lambda: "cannot reach the API" in out.read_text(), 20, "the line saying so")
        with ServerThread(create_app(settings), port=port):
            wait_for(lambda: "reachable again" in out.read_text(), 40, "the line saying so")
        assert out.read_text().count("cannot reach the API") == 1  # once, not once a try
    finally:
        listener.terminate()
        listener.wait(15)
    refused = run_listen(api_url, "qrt_wrong", receiver.url, tmp_path / "c2",
                         tmp_path / "refused.out")  # fmt: skip
    with ServerThread(create_app(settings), port=port):
        assert refused.wait(20) != 0
    assert "401" in (tmp_path / "refused.out").read_text()
