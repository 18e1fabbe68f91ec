"""Helpers the tests share: waiting on a condition, compressed settings, a worker process,
clients, and round trips. Fixtures live in conftest.py and use these."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner
from redis import Redis as SyncRedis
from standardwebhooks.webhooks import Webhook

from tracker.cli import main
from tracker.core.records import Client, EventType
from tracker.devtools.receiver import Received, Receiver
from tracker.devtools.simulator import SimTask, Simulator
from tracker.embedded_redis import free_port
from tracker.net.callbacks import Answer
from tracker.net.client import NotSent, Reply, Unanswered
from tracker.settings import Settings
from tracker.store import keys
from tracker.store.connection import connect, connect_sync
from workers.context import WorkerContext, build_context

SIM_KEY = "sim-test-key"
# The tests' TRACKER_ENCRYPTION_KEYS (a Fernet key made for them, guarding nothing real).
TEST_ENCRYPTION_KEYS = "5Bb2rGsQZu0p5_ldCVbHcb6zpl-JDik3_jw9wFa-KLc="


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 15.0,
    what: str = "condition",
    interval: float = 0.02,
) -> Any:
    """Poll `predicate` every `interval` s until it returns something truthy; fail after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# On the test cluster the records are spread over three partitions (one per primary, as
# `keys.partition_tags` places them); on one Redis there is one.
CLUSTER_PARTITIONS = 3


def partitions_for(redis_url: str) -> int:
    """The partition count the tests run with on `redis_url`."""
    return CLUSTER_PARTITIONS if redis_url.startswith("redis+cluster:") else 1


@contextmanager
def client_records(redis_url: str, client_id: str) -> Iterator[tuple[SyncRedis, keys.Keyspace]]:
    """A raw connection to the Redis (on a cluster, the primary) that holds the client's
    records, and their keys."""
    count = partitions_for(redis_url)
    tag = keys.partition_tags(count)[keys.partition_of(client_id, count)]
    with connect_sync(redis_url, tag) as conn:
        yield conn, keys.Keyspace(tag)


def fast_settings(redis_url: str, simulator: Simulator, **changes: Any) -> Settings:
    """Settings with every clock compressed so a round trip takes well under a second."""
    base = Settings(
        redis_url=redis_url,
        partitions=partitions_for(redis_url),
        quickrouter_base_url=simulator.url,
        quickrouter_api_key=SIM_KEY,
        allow_private_callbacks=True,
        encryption_keys=TEST_ENCRYPTION_KEYS,
        poll_first_delay=0.05,
        poll_factor=1.5,
        poll_max_delay=0.2,
        poll_deadline=20.0,
        poll_loop_interval=0.0,  # the loop's budget is on the real clock's 5 s: off here
        rejection_limit=3,
        upstream_timeout=0.5,
        delivery_timeout=2.0,
        delivery_schedule=(0.05, 0.1, 0.1),
        sweep_interval=1,
        queue_poll_interval=0.02,
        shutdown_grace=2.0,
    )
    return dataclasses.replace(base, **changes)


@dataclasses.dataclass
class S3:
    endpoint: str
    client: Any  # boto3's S3 client, to look at what the tracker stored

    def bucket(self) -> str:
        name = f"videos-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name

    def url(self, bucket: str, prefix: str = "kept") -> str:
        return f"s3://{bucket}/{prefix}?endpoint={self.endpoint}&region=us-east-1"

    def keys(self, bucket: str) -> list[str]:
        found = self.client.list_objects_v2(Bucket=bucket).get("Contents", [])
        return sorted(item["Key"] for item in found)

    def open_uploads(self, bucket: str) -> list[Any]:
        return list(self.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


class QrtrackerProcess:
    """A `qrtracker` command as a real child process, its output in `log_path`."""

    def __init__(self, settings: Settings, log_path: Path, *command: str) -> None:
        self.log_path = log_path
        env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tracker.cli", *command],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class WorkerProcess(QrtrackerProcess):
    """`qrtracker worker`."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        super().__init__(settings, log_path, "worker")


class ApiProcess(QrtrackerProcess):
    """`qrtracker api` on a port of its own; returns once it serves."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        super().__init__(settings, log_path, "api", "--port", self.url.rpartition(":")[2])

        def up() -> bool:
            try:
                return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 30, "the API process to serve")


def create_client(
    redis_url: str, name: str = "acme", partitions: int | None = None
) -> dict[str, str]:
    """A client made the way an operator makes one: `qrtracker clients create NAME --json`
    (with TRACKER_PARTITIONS `partitions`, else the tests' count for `redis_url`)."""
    count = partitions or partitions_for(redis_url)
    result = CliRunner().invoke(
        main,
        ["clients", "create", name, "--json"],
        env={"REDIS_URL": redis_url, "TRACKER_PARTITIONS": str(count)},
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)  # type: ignore[no-any-return]


def auth(client: dict[str, str]) -> dict[str, str]:
    return {"authorization": f"Bearer {client['api_key']}"}


@dataclass
class Trip:
    """One client's view of the tracker, with the simulator upstream and a receiver path."""

    api: httpx.Client
    client: dict[str, str]
    simulator: Simulator
    receiver: Receiver
    path: str  # this test's own receiver path
    worker: WorkerProcess | None = None  # the worker it was launched with, if any

    def script(self, **script: Any) -> SimTask:
        return self.simulator.script(**script)

    def register(
        self, task_id: str, suffix: str = "", expect: int = 201, **extra: Any
    ) -> dict[str, Any]:
        """Subscribe the receiver path (plus `suffix`) to `task_id`."""
        response = self.api.post(
            "/v1/tasks",
            headers=auth(self.client),
            json={"task_id": task_id, "callback_url": self.receiver.url + self.path + suffix,
                  **extra},
        )  # fmt: skip
        assert response.status_code == expect, response.text
        return response.json()  # type: ignore[no-any-return]

    def worker_polls(self) -> None:
        """Return once the worker polls (a worker process takes a moment to start): a task
        scripted after this is seen while it runs, however short."""
        warm = self.script(scenario="never_ends")
        self.register(warm.task_id, suffix="/warm")
        wait_for(lambda: self.view(warm.task_id)["polls"] > 0, 30, "the worker's first poll")

    def view(self, task_id: str) -> dict[str, Any]:
        response = self.api.get(f"/v1/tasks/{task_id}", headers=auth(self.client))
        return response.json()  # type: ignore[no-any-return]

    def settled(self, task_id: str) -> dict[str, Any]:
        """Wait until the task has ended and each of its deliveries too; the API's view."""

        def done() -> dict[str, Any] | None:
            view = self.view(task_id)
            deliveries = [d for s in view["subscriptions"] for d in s["deliveries"]]
            ended = all(d["state"] != "pending" for d in deliveries)
            return view if view["state"] != "tracking" and deliveries and ended else None

        return wait_for(done, 20, f"task {task_id} to end and deliver")  # type: ignore[no-any-return]

    def hits(self, suffix: str = "") -> list[Received]:
        return self.receiver.at(self.path + suffix)

    def only_webhook(self, suffix: str = "") -> tuple[Received, dict[str, Any]]:
        """The one accepted webhook at the path, verified with the client's secret."""
        accepted = self.receiver.accepted(self.path + suffix)
        assert len(accepted) == 1, [r.json()["type"] for r in accepted]
        hit = accepted[0]
        return hit, Webhook(self.client["webhook_secret"]).verify(hit.body, hit.headers)

    def round_trip(self, **script: Any) -> tuple[SimTask, dict[str, Any], dict[str, Any]]:
        """Script a task, register it, wait; the task, the API's view and the one event."""
        task = self.script(**script)
        self.register(task.task_id)
        view = self.settled(task.task_id)
        return task, view, self.only_webhook()[1]


# -- a worker's parts in one process ---------------------------------------------------------

TASK = "veo3.1-fast:1770350082-inproc"
HOOK = "http://hooks.test/in"


class Peers:
    """Upstream answers by task id, and the receiver's answer; records every request."""

    def __init__(self) -> None:
        self.upstream: dict[str, dict[str, Any]] = {}
        self.receiver_status = 204
        self.posts: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/video/query":
            body = self.upstream.get(request.url.params["id"], {"status": "error"})
            return httpx.Response(200, json=body)
        self.posts.append(request)
        return httpx.Response(self.receiver_status)


class TransportSender:
    """A webhook sender over an httpx client: in-process tests answer webhooks from `Peers`
    through an httpx MockTransport (the worker's own sender is `tracker.net.callbacks`)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        response = await self.http.post(url, content=body, headers=dict(headers))
        return Answer(response.status_code, response.headers.get("retry-after"))

    async def aclose(self) -> None:
        return None


class TransportUpstream:
    """The upstream over an httpx client: in-process tests answer QuickRouter's part from
    `Peers` through an httpx MockTransport (the processes' own is `tracker.net.client`)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        time_limit: float,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Reply:
        try:
            response = await self.http.request(
                method, url, params=params, content=body, headers=dict(headers),
                timeout=time_limit,
            )  # fmt: skip
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise NotSent(type(exc).__name__) from None
        except httpx.TimeoutException:
            raise TimeoutError from None
        except httpx.HTTPError as exc:
            raise Unanswered(type(exc).__name__) from None
        return Reply(response.status_code, response.headers, response.content)

    async def aclose(self) -> None:
        return None


@dataclass
class Parts:
    ctx: WorkerContext
    peers: Peers
    client: Client


@asynccontextmanager
async def worker_parts(settings: Settings) -> AsyncIterator[Parts]:
    """A worker context on the test's Redis and a mock network, and a client of the test's."""
    peers = Peers()
    redis = connect(str(settings.redis_url))
    http = httpx.AsyncClient(transport=httpx.MockTransport(peers.handle))
    ctx = build_context(settings, redis, TransportUpstream(http), TransportSender(http))
    client, _ = await ctx["store"].clients.create("inproc", time.time())
    try:
        yield Parts(ctx, peers, client)
    finally:
        await http.aclose()
        await redis.aclose()


async def register(parts: Parts, *events: EventType) -> None:
    now = time.time()
    await (
        parts.ctx["store"]
        .shards[0]
        .registrations.register(
            client_id=parts.client.id,
            task_id=TASK,
            callback_url=HOOK,
            metadata={"order": 7},
            events=events or (EventType.COMPLETED, EventType.FAILED, EventType.TIMED_OUT),
            now=now,
            deadline_at=now + 60,
            first_poll_at=now,
        )
    )


async def queued(ctx: WorkerContext) -> list[str]:
    """The delivery ids in the due set, for a dispatcher to claim."""
    return [m.decode() for m in await ctx["redis"].zrange(keys.HOME.DUE_DELIVERIES, 0, -1)]


def run(settings: Settings, body: Callable[[WorkerContext, Peers, Parts], Awaitable[None]]) -> None:
    async def main() -> None:
        async with worker_parts(settings) as parts:
            await body(parts.ctx, parts.peers, parts)

    asyncio.run(main())


# -- the dashboard, as a browser would use it ---------------------------------------------------


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def signed_in(opened: list[httpx.Client], base: str, secret: str) -> httpx.Client:
    """A browser-like session signed in with `secret` (a client's key or the operator's)."""
    browser = httpx.Client(base_url=base, timeout=10)
    opened.append(browser)
    form = browser.get("/ui/login")
    answer = browser.post("/ui/login", data={"csrf": csrf_of(form), "secret": secret})
    assert answer.status_code == 303, answer.text
    return browser
