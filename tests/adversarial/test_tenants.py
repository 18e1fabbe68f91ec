"""No tenant reaches another, round three (issue 23): many origins, slow stream readers, a
Redis that lost its data, keys that grew for ever, a shared QuickRouter key, forged cursors,
concurrent Idempotency-Keys, revocation, dashboard sessions, and a URL two parsers read
differently. Each case runs against real servers on loopback (the API, worker processes,
Redis, the simulator, a receiver)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
from click.testing import CliRunner

from tests.support import Trip, WorkerProcess, auth, create_client, wait_for
from tracker.api.idempotency import fingerprint
from tracker.cli import main
from tracker.devtools.peers import DeadOrigins
from tracker.devtools.receiver import Receiver
from tracker.devtools.simulator import Scenario, Simulator
from tracker.net.guard import sender_host
from tracker.settings import Settings
from tracker.store import keys
from tracker.store.connection import connect
from tracker.store.idempotency import Idempotency, digest

pytestmark = pytest.mark.slow


def register(api: httpx.Client, client: dict[str, str], task_id: str, url: str | None) -> None:
    body: dict[str, Any] = {"task_id": task_id}
    if url is not None:
        body["callback_url"] = url
    answer = api.post("/v1/tasks", headers=auth(client), json=body)
    assert answer.status_code == 201, answer.text


@pytest.fixture
def dead_origins() -> Iterator[Callable[[int], list[str]]]:
    """Callback URLs of distinct origins that take connections and never answer."""
    with contextlib.ExitStack() as stack:
        yield lambda count: stack.enter_context(DeadOrigins(count)).urls


# -- 1. many origins ---------------------------------------------------------------------------


def test_many_dead_origins_of_one_client_never_hold_up_anothers_webhook(
    trip: Trip, settings: Settings, start_worker: Callable[[Settings], WorkerProcess],
    start_api: Callable[[Settings], httpx.Client], dead_origins: Callable[[int], list[str]],
    redis_url: str,
) -> None:  # fmt: skip
    """A hostile client's 200 subscriptions to 200 distinct dead origins would fill every
    slot of the worker for a whole delivery time-out (20 s); the quiet client's webhook goes
    out at once all the same, and the hostile client never holds more than its share."""
    fair = dataclasses.replace(
        settings, worker_concurrency=20, deliveries_per_client=5, delivery_timeout=20.0,
        registration_rate=10**6, breaker_failures=100,
    )  # fmt: skip
    start_worker(fair)
    api = start_api(fair)
    trip = dataclasses.replace(trip, api=api)
    hostile = create_client(redis_url, "hostile")
    urls = dead_origins(200)
    tasks = [trip.script(duration=0.1).task_id for _ in range(20)]
    for n, task_id in enumerate(tasks):
        for url in urls[n * 10 : n * 10 + 10]:
            register(api, hostile, task_id, url)
    conn = redis.Redis.from_url(redis_url)

    def hostile_sending() -> bool:
        ended = all(
            api.get(f"/v1/tasks/{t}", headers=auth(hostile)).json()["state"] == "completed"
            for t in tasks
        )
        return ended and conn.zcard(keys.HOME.DUE_DELIVERIES) > 0

    wait_for(hostile_sending, 20, "the hostile client's deliveries to be under way")
    quiet = trip.script(duration=0.2)
    trip.register(quiet.task_id)
    # Well within the 20 s the hostile attempts hold their slots for.
    wait_for(lambda: trip.receiver.accepted(trip.path), 10, "the quiet client's webhook")
    hostile_id = hostile["id"]
    assert conn.zcard(keys.HOME.client_sending(hostile_id)) <= 5
    conn.close()


# -- 2. slow stream readers --------------------------------------------------------------------


def tcp_state(sock: socket.socket) -> int:
    """The socket's TCP state (Linux `tcp_info.tcpi_state`: 1 established, 7 closed)."""
    return int(struct.unpack("B", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1))[0])


def fill_feed(redis_url: str, client_id: str, count: int, size: int) -> None:
    """`count` events of `size` bytes each in the client's feed, as the workers write them."""
    with redis.Redis.from_url(redis_url) as conn, conn.pipeline() as pipe:
        for n in range(count):
            body = b'{"type":"video.status_changed","data":{"pad":"' + b"x" * size + b'"}}'
            fields = {"id": f"msg_{n}", "type": "video.status_changed", "task": "veo3:pad",
                      "sub": "sub_pad", "seq": "1", "body": body}  # fmt: skip
            pipe.xadd(keys.HOME.client_events(client_id), fields)  # type: ignore[arg-type]
        pipe.execute()


def test_a_stalled_stream_reader_is_cut_off_and_holds_nothing_after(
    settings: Settings, start_api: Callable[[Settings], httpx.Client],
    client: dict[str, str], redis_url: str,
) -> None:  # fmt: skip
    """A reader with a tiny receive buffer that reads nothing: at the send time-out its
    connection is aborted (not closed, which would keep flushing to it while its lease went
    to yet another stream), and only then is its lease given back."""
    api = start_api(dataclasses.replace(settings, stream_send_timeout=1.0, streams_per_client=2))
    fill_feed(redis_url, client["id"], 200, 16_000)
    host, port = api.base_url.host, api.base_url.port
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    slow.connect((host, port))
    slow.sendall(
        f"GET /v1/events/stream?after=0-0 HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {client['api_key']}\r\n\r\n".encode()
    )
    conn = redis.Redis.from_url(redis_url)
    wait_for(
        lambda: conn.zcard(keys.HOME.client_streams(client["id"])) == 1, 10, "the stream's lease"
    )
    wait_for(lambda: conn.zcard(keys.HOME.client_streams(client["id"])) == 0, 15, "the lease back")
    # The lease is back: the connection is gone with it, not flushing on in the background.
    wait_for(lambda: tcp_state(slow) != 1, 5, "the stalled stream's connection to be aborted")
    with pytest.raises(OSError):
        while slow.recv(65536):
            pass
    slow.close()
    conn.close()


# -- 3. Redis losing its data --------------------------------------------------------------------


def test_a_redis_that_lost_its_data_is_refused_loudly_until_started_over(
    trip: Trip, settings: Settings, worker: WorkerProcess, redis_url: str
) -> None:
    trip.worker_polls()  # the worker runs (it read the epoch at its start)
    task = trip.script(scenario=Scenario.NEVER_ENDS)
    trip.register(task.task_id)
    assert trip.api.get("/readyz").status_code == 200
    with redis.Redis.from_url(redis_url) as conn:
        conn.flushall()
    lost = wait_for(
        lambda: (r := trip.api.get("/readyz")).status_code == 503 and r, 5, "readyz to fail"
    )
    assert lost.json()["type"] == "urn:qrtracker:problem:data_lost"
    answer = trip.api.get("/v1/tasks", headers=auth(trip.client))
    assert answer.status_code == 503  # not "unknown API key": the loss is the answer
    assert answer.json()["type"] == "urn:qrtracker:problem:data_lost"
    assert "qrtracker_redis_identity_lost 1.0" in trip.api.get("/metrics").text
    page = trip.api.get("/ui/tasks")  # the dashboard says so too
    assert page.status_code == 503 and "lost the tracker" in page.text
    try:
        wait_for(lambda: "Redis lost the tracker" in worker.output(), 10, "the worker's log")
    except AssertionError:
        raise AssertionError(worker.output()[-3000:]) from None
    result = CliRunner().invoke(main, ["redis", "start-over"], env={"REDIS_URL": redis_url})
    assert result.exit_code != 0 and "--yes" in result.output  # asks first
    result = CliRunner().invoke(
        main, ["redis", "start-over", "--yes"], env={"REDIS_URL": redis_url}
    )
    assert result.exit_code == 0, result.output
    wait_for(lambda: trip.api.get("/readyz").status_code == 200, 5, "readyz after starting over")
    assert trip.api.get("/v1/tasks", headers=auth(trip.client)).status_code == 401  # truly gone


# -- 4. no key grows for ever --------------------------------------------------------------------

# What stays once every task, delivery and feed entry has expired (README, Reliability).
LONG_LIVED = tuple(
    keys.PREFIX + name for name in ("clients", "client:", "apikey:", "identity", "learn:")
)


def test_after_the_retention_only_the_documented_long_lived_keys_are_left(
    trip: Trip, settings: Settings, start_worker: Callable[[Settings], WorkerProcess],
    start_api: Callable[[Settings], httpx.Client], dead_origins: Callable[[int], list[str]],
    redis_url: str,
) -> None:  # fmt: skip
    short = dataclasses.replace(
        settings, retention=1.0, job_timeout_override=1.0, delivery_timeout=0.3,
        breaker_failures=1, registration_rate=10**6,
    )  # fmt: skip
    start_worker(short)
    api = start_api(short)
    (url,) = dead_origins(1)
    tasks = [trip.script(duration=0.1).task_id for _ in range(10)]
    for n, task_id in enumerate(tasks):
        register(api, trip.client, task_id, f"{url}{n}")
        register(api, trip.client, task_id, None)  # a feed-only subscription too
    conn = redis.Redis.from_url(redis_url)
    wait_for(lambda: conn.zcard(keys.HOME.OPEN_ORIGINS), 20, "the dead origin's circuit to open")

    def leftovers() -> list[str]:
        """Keys that would stay for ever: no expiry, and not documented as long-lived (a
        breaker's hash, say, expires an hour after its last failure: that is not for ever)."""
        names = [k.decode() for k in conn.scan_iter(count=1000)]
        client_keys = {keys.HOME.client(trip.client["id"])}
        return [
            n for n in names
            if not n.startswith("arq:")
            and not (n.startswith(LONG_LIVED)
                     and (":" not in n.split(":", 2)[-1] or n in client_keys))
            and conn.ttl(n) == -1
        ]  # fmt: skip

    def records() -> list[bytes]:
        found = [*conn.keys(keys.PREFIX + "task:*"), *conn.keys(keys.PREFIX + "sub:*")]
        return (
            found + conn.keys(keys.PREFIX + "delivery:*") + conn.keys(keys.HOME.client_events("*"))
        )

    wait_for(lambda: not records(), 45, "every task, delivery and feed to expire")
    try:
        wait_for(lambda: not leftovers(), 10, "the sweeper to trim what does not expire")
    except AssertionError:
        raise AssertionError(f"left: {leftovers()}") from None
    assert conn.ttl(keys.HOME.client_tasks(trip.client["id"])) == -2  # swept, gone
    assert not conn.exists(keys.HOME.OPEN_ORIGINS)
    assert api.get("/v1/tasks", headers=auth(trip.client)).json()["tasks"] == []
    conn.close()


# -- 5. a shared QuickRouter key ---------------------------------------------------------------


def test_one_client_dropping_a_shared_key_fails_nothing_of_anothers(
    settings: Settings, api: httpx.Client, simulator: Simulator, receiver: Receiver,
    worker: WorkerProcess, redis_url: str,
) -> None:  # fmt: skip
    key = f"sk-shared-{uuid.uuid4().hex}"
    simulator.keys.add(key)
    alice, bob = create_client(redis_url, "alice"), create_client(redis_url, "bob")
    for holder in (alice, bob):
        assert (
            api.post("/v1/upstream-keys", headers=auth(holder), json={"key": key}).status_code
            == 201
        )
    task = simulator.script(owner=key, duration=2.0)
    path = f"/hooks/{uuid.uuid4().hex}"
    register(api, alice, task.task_id, receiver.url + path + "-alice")
    register(api, bob, task.task_id, receiver.url + path + "-bob")
    fingerprint = api.get("/v1/upstream-keys", headers=auth(alice)).json()["keys"][0]
    dropped = api.delete(f"/v1/upstream-keys/{fingerprint['fingerprint']}", headers=auth(alice))
    assert dropped.status_code == 204
    hit = wait_for(lambda: receiver.accepted(path + "-bob"), 20, "Bob's webhook")[0]
    assert hit.json()["type"] == "video.completed"  # polled with Bob's copy of the key
    for holder in (alice, bob):  # Alice still sees the task she registered
        view = api.get(f"/v1/tasks/{task.task_id}", headers=auth(holder))
        assert view.status_code == 200 and view.json()["state"] == "completed"
        assert (
            api.post(f"/v1/tasks/{task.task_id}/redeliver", headers=auth(holder)).status_code == 202
        )


# -- 6. a forged cursor --------------------------------------------------------------------------


def test_a_forged_cursor_is_clamped_and_never_slows_another_stream(
    trip: Trip, worker: WorkerProcess
) -> None:
    """Streams follow the default 15 s heartbeat here: a stream left waiting for the watcher
    would get its event a heartbeat late."""
    base = str(trip.api.base_url)
    got: dict[str, list[str]] = {"forged": [], "plain": []}
    ready = {name: threading.Event() for name in got}

    def follow(name: str, headers: dict[str, str]) -> None:
        with (
            httpx.Client(base_url=base, timeout=30) as http,
            http.stream(
                "GET", "/v1/events/stream", headers={**auth(trip.client), **headers}
            ) as stream,
        ):
            for line in stream.iter_lines():
                if line.startswith("id: "):
                    got[name].append(line[4:])
                    ready[name].set()
                if len(got[name]) >= 2:
                    return

    threads = [
        threading.Thread(target=follow, args=("forged", {"last-event-id": "9999999999999-0"})),
        threading.Thread(target=follow, args=("plain", {})),
    ]
    threads[0].start()
    assert ready["forged"].wait(10)
    threads[1].start()
    assert ready["plain"].wait(10)
    assert got["forged"][0] == "0-0"  # clamped to the end of the (empty) feed
    task = trip.script(duration=0.2)
    register(trip.api, trip.client, task.task_id, None)
    started = time.monotonic()
    threads[1].join(20)
    assert len(got["plain"]) == 2, "the event never reached the plain stream"
    assert time.monotonic() - started < 8  # woken by the watcher, not by a heartbeat
    threads[0].join(20)
    assert len(got["forged"]) == 2  # the clamped stream gets it too


# -- 7. Idempotency-Key under concurrency ------------------------------------------------------


def test_a_duplicate_of_a_request_in_flight_is_409_and_touches_nothing(
    open_api: httpx.Client, client: dict[str, str], redis_url: str, simulator: Simulator,
    receiver: Receiver,
) -> None:  # fmt: skip
    task = simulator.script(scenario=Scenario.NEVER_ENDS)
    body = {"task_id": task.task_id, "callback_url": receiver.url + "/hooks/idem"}

    async def first_in_flight() -> None:  # what the first request writes before it runs
        pool = connect(redis_url)
        await Idempotency(pool, keys.HOME).begin(
            client["id"], "k-1", fingerprint("POST /v1/tasks", body), time.time(), "first"
        )
        await pool.aclose()

    asyncio.run(first_in_flight())
    headers = {**auth(client), "idempotency-key": "k-1"}
    duplicate = open_api.post("/v1/tasks", headers=headers, json=body)
    assert duplicate.status_code == 409 and duplicate.headers["retry-after"] == "1"
    assert open_api.get(f"/v1/tasks/{task.task_id}", headers=auth(client)).status_code == 404
    with redis.Redis.from_url(redis_url) as conn:  # the first request's record is untouched
        record = conn.hgetall(keys.HOME.idempotency(client["id"], digest("k-1")))
        assert record[b"state"] == b"started" and record[b"token"] == b"first"
    # A fresh key: the first answer, then its replay, both with Location.
    fresh = {**auth(client), "idempotency-key": "k-2"}
    first = open_api.post("/v1/tasks", headers=fresh, json=body)
    again = open_api.post("/v1/tasks", headers=fresh, json=body)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"] == f"/v1/tasks/{task.task_id}"


# -- 8. revoking a client ------------------------------------------------------------------------


def test_revoking_a_client_stops_everything_done_on_its_behalf(
    trip: Trip, worker: WorkerProcess, simulator: Simulator, redis_url: str
) -> None:
    key = f"sk-own-{uuid.uuid4().hex}"
    simulator.keys.add(key)
    other = create_client(redis_url, "other")  # holds the same key, follows one task too
    for holder in (trip.client, other):
        added = trip.api.post("/v1/upstream-keys", headers=auth(holder), json={"key": key})
        assert added.status_code == 201
    running = simulator.script(owner=key, scenario=Scenario.NEVER_ENDS)
    shared = simulator.script(owner=key, scenario=Scenario.NEVER_ENDS)
    trip.register(running.task_id)
    trip.register(shared.task_id, suffix="-shared")
    register(trip.api, other, shared.task_id, trip.receiver.url + trip.path + "-other")
    trip.receiver.script(trip.path + "-failing", *([500] * 50))
    ended = simulator.script(owner=key, duration=0.1)
    trip.register(ended.task_id, suffix="-failing")
    wait_for(lambda: trip.receiver.at(trip.path + "-failing"), 20, "the failing webhook")
    waited: dict[str, Any] = {}

    def long_poll() -> None:  # on the task another client keeps tracking
        with httpx.Client(base_url=str(trip.api.base_url), timeout=60) as http:
            started = time.monotonic()
            answer = http.get(f"/v1/tasks/{shared.task_id}?wait=40", headers=auth(trip.client))
            waited.update(status=answer.status_code, seconds=time.monotonic() - started)

    waiter = threading.Thread(target=long_poll)
    waiter.start()
    wait_for(lambda: trip.view(running.task_id)["polls"] > 1, 20, "the running task's polls")
    result = CliRunner().invoke(
        main, ["clients", "revoke", trip.client["id"]], env={"REDIS_URL": redis_url}
    )
    assert result.exit_code == 0, result.output
    revoked_at = time.monotonic()
    waiter.join(20)
    assert waited["status"] == 401 and waited["seconds"] < 15  # not after the whole 40 s
    conn = redis.Redis.from_url(redis_url)
    assert not conn.exists(keys.HOME.client_upstream_keys(trip.client["id"]))  # credentials gone
    record = conn.hgetall(keys.HOME.client(trip.client["id"]))
    assert b"secret" not in record and record[b"revoked"] == b"1"  # the record stays
    mine = conn.hget(keys.HOME.task(_tracking(conn, trip.client["id"], running.task_id)), "state")
    assert mine == b"cancelled"  # nobody else follows it: no longer polled
    theirs = _tracking(conn, other["id"], shared.task_id)
    assert conn.hget(keys.HOME.task(theirs), "state") == b"tracking"  # the other client's goes on
    polls = int(conn.hget(keys.HOME.task(theirs), "polls") or 0)
    wait_for(lambda: int(conn.hget(keys.HOME.task(theirs), "polls") or 0) > polls, 20,
             "the shared task polled with the other client's key")  # fmt: skip
    sent = len(trip.receiver.at(trip.path + "-failing"))
    pending = _delivery_of(conn, trip.client["id"], ended.task_id)
    wait_for(lambda: not conn.zscore(keys.HOME.DUE_DELIVERIES, pending), 20, "the delivery skipped")
    assert conn.hget(keys.HOME.delivery(pending), "state") == b"skipped"
    assert len(trip.receiver.at(trip.path + "-failing")) <= sent + 1  # one already in flight
    assert time.monotonic() - revoked_at < 30
    conn.close()


def _tracking(conn: redis.Redis, client_id: str, task_id: str) -> str:
    for member in conn.zrange(keys.HOME.client_tasks(client_id), 0, -1):
        if member.decode().endswith(task_id):
            return member.decode()
    raise AssertionError(f"no task {task_id}")


def _delivery_of(conn: redis.Redis, client_id: str, task_id: str) -> str:
    tracking = _tracking(conn, client_id, task_id)
    sub_id = conn.hget(keys.HOME.task(tracking), "subs").decode().split()[0]
    return str(conn.lrange(keys.HOME.subscription_deliveries(sub_id), 0, -1)[0].decode())


# -- 9. dashboard sessions -----------------------------------------------------------------------

ADMIN = "operator-token-round-three"


def csrf_of(page: httpx.Response) -> str:
    marker = 'name="csrf" value="'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index('"', start)]


def signed_in(base: str, secret: str) -> httpx.Client:
    browser = httpx.Client(base_url=base, timeout=10)
    form = browser.get("/ui/login")
    answer = browser.post("/ui/login", data={"csrf": csrf_of(form), "secret": secret})
    assert answer.status_code == 303, answer.text
    return browser


def test_dashboard_sessions_end_for_good_and_guessing_is_limited(
    settings: Settings, start_api: Callable[[Settings], httpx.Client], client: dict[str, str],
    caplog: pytest.LogCaptureFixture, redis_url: str,
) -> None:  # fmt: skip
    api = start_api(dataclasses.replace(settings, admin_token=ADMIN))
    base = str(api.base_url)
    # Guessing: a few tries, then 429 for the rest of the minute, each refusal logged.
    with httpx.Client(base_url=base, timeout=10) as guesser:
        token = csrf_of(guesser.get("/ui/login"))
        codes = [
            guesser.post("/ui/login", data={"csrf": token, "secret": f"qrt_guess{n}"}).status_code
            for n in range(30)
        ]
        assert codes[:10] == [401] * 10 and set(codes[10:]) == {429}
        right = guesser.post("/ui/login", data={"csrf": token, "secret": client["api_key"]})
        assert right.status_code == 429  # even the right key, until the minute ends
    assert "a dashboard sign-in failed" in caplog.text
    with redis.Redis.from_url(redis_url) as conn:  # as if the minute had passed
        conn.delete(*conn.keys(keys.PREFIX + "ui:signin:*"))
    # Signing out ends the session: the cookie saved before opens nothing.
    browser = signed_in(base, client["api_key"])
    saved = dict(browser.cookies)
    page = browser.get("/ui/tasks")
    assert page.status_code == 200
    browser.post("/ui/logout", data={"csrf": csrf_of(page)})
    with httpx.Client(base_url=base, timeout=10, cookies=saved) as replay:
        assert replay.get("/ui/tasks").headers["location"].endswith("/ui/login")
    # The operator: rotate answers a redirect, the secret shows once; a new token ends it.
    operator = signed_in(base, ADMIN)
    page = operator.get("/ui/operator")
    action = f"/ui/operator/clients/{client['id']}/rotate"
    asked = operator.post(action, data={"csrf": csrf_of(page)})
    assert asked.status_code == 200 and "Yes, rotate" in asked.text
    done = operator.post(action, data={"csrf": csrf_of(page), "confirm": "yes"})
    assert done.status_code == 303
    with redis.Redis.from_url(redis_url) as conn:  # kept for the next page, sealed
        for name in conn.keys(keys.PREFIX + "ui:session:*"):
            assert b"whsec_" not in b" ".join(conn.hvals(name))
    shown = operator.get("/ui/operator")
    assert "New webhook secret" in shown.text and "whsec_" in shown.text
    assert "New webhook secret" not in operator.get("/ui/operator").text  # once
    other = start_api(dataclasses.replace(settings, admin_token=ADMIN + "-new"))
    with httpx.Client(base_url=str(other.base_url), timeout=10, cookies=operator.cookies) as old:
        assert old.get("/ui/operator").headers["location"].endswith("/ui/login")
    browser.close()
    operator.close()


# -- 10. one URL parser ------------------------------------------------------------------------


def test_the_sender_reads_a_callbacks_host_as_the_check_did() -> None:
    """The registration refuses a URL the two parsers read differently (test_input's hostile
    callbacks); those it takes, the sender reads as the check did."""
    assert sender_host("http://[::1]:8080/x") == "::1"
    assert sender_host("https://User:pw@Example.COM/x") == "example.com"
