"""Fixtures: an embedded Redis, the simulator, a receiver, the API, workers, a client.

Helpers are in tests/support.py."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import httpx
import pytest
import redis

from tests.support import (
    S3,
    SIM_KEY,
    TEST_ENCRYPTION_KEYS,
    Trip,
    WorkerProcess,
    create_client,
    fast_settings,
)
from tracker.api import create_app
from tracker.devtools.cluster import EmbeddedCluster
from tracker.devtools.receiver import Receiver
from tracker.devtools.simulator import Simulator
from tracker.embedded_redis import EmbeddedRedis, free_port
from tracker.server import ServerThread
from tracker.settings import Settings


@pytest.fixture(scope="session", autouse=True)
def encryption_keys() -> Iterator[str]:
    """Every process the tests start (CLI runs, workers) seals secrets with the test key."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRACKER_ENCRYPTION_KEYS", TEST_ENCRYPTION_KEYS)
        yield TEST_ENCRYPTION_KEYS


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    """A real Redis Cluster on loopback: three primaries, a replica each."""
    with EmbeddedCluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    """The cluster that tests marked `cluster` run on too (never killed: see redis_cluster)."""
    with EmbeddedCluster(tmp_path_factory.mktemp("shared-cluster")) as cluster:
        yield cluster


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked `cluster` that uses a Redis runs twice: on one Redis and on a cluster."""
    if "redis_backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "cluster"
    ):
        metafunc.parametrize("redis_backend", ["standalone", "cluster"], indirect=True)


@pytest.fixture
def redis_backend(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "standalone"))


@pytest.fixture
def redis_url(
    redis_backend: str, redis_server: EmbeddedRedis, request: pytest.FixtureRequest
) -> str:
    """The records' Redis, emptied: one Redis, or (for a test marked `cluster`, in its second
    run) a Redis Cluster, whose workers keep arq on the one Redis (`settings`)."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    if redis_backend == "cluster":
        cluster: EmbeddedCluster = request.getfixturevalue("shared_cluster")
        cluster.flush()
        return cluster.url
    return redis_server.url


@pytest.fixture(scope="session")
def simulator() -> Iterator[Simulator]:
    sim = Simulator(api_key=SIM_KEY, slow_delay=1.5, default_duration=0.3)
    with ServerThread(sim.app()) as server:
        sim.url = server.url
        yield sim


@pytest.fixture(scope="session")
def s3() -> Iterator[S3]:
    """moto's S3 API as a real server on 127.0.0.1 (never its in-process mock)."""
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as patch:
        # The operator's credentials, read the usual way by every process the tests start.
        patch.setenv("AWS_ACCESS_KEY_ID", "operator-key")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "operator-secret")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="operator-key", aws_secret_access_key="operator-secret",
        )  # fmt: skip
        try:
            yield S3(endpoint, client)
        finally:
            client.close()
            server.stop()


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    hooks = Receiver()
    with ServerThread(hooks.app()) as server:
        hooks.url = server.url
        yield hooks


@pytest.fixture
def arq_redis_url(redis_url: str, redis_server: EmbeddedRedis) -> str | None:
    """On a cluster, the workers keep arq on the one Redis (TRACKER_ARQ_REDIS_URL)."""
    return redis_server.url if redis_url.startswith("redis+cluster:") else None


@pytest.fixture
def settings(redis_url: str, arq_redis_url: str | None, simulator: Simulator) -> Settings:
    return fast_settings(redis_url, simulator, arq_redis_url=arq_redis_url)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[Settings], WorkerProcess]]:
    workers: list[WorkerProcess] = []

    def start(settings: Settings) -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def worker(settings: Settings, start_worker: Callable[[Settings], WorkerProcess]) -> WorkerProcess:
    return start_worker(settings)


@pytest.fixture
def start_api() -> Iterator[Callable[..., httpx.Client]]:
    stack: list[tuple[ServerThread, httpx.Client]] = []

    def start(settings: Settings, port: int = 0) -> httpx.Client:
        server = ServerThread(create_app(settings), port=port).__enter__()
        client = httpx.Client(base_url=server.url, timeout=10)
        stack.append((server, client))
        return client

    yield start
    for server, client in stack:
        client.close()
        server.__exit__(None, None, None)


@pytest.fixture
def api(settings: Settings, start_api: Callable[[Settings], httpx.Client]) -> httpx.Client:
    return start_api(settings)


@pytest.fixture
def open_api(settings: Settings, start_api: Callable[[Settings], httpx.Client]) -> httpx.Client:
    return start_api(dataclasses.replace(settings, registration_rate=1_000_000))


@pytest.fixture
def launch(
    start_api: Callable[..., httpx.Client],
    start_worker: Callable[[Settings], WorkerProcess],
    client: dict[str, str],
    simulator: Simulator,
    receiver: Receiver,
    hook: str,
) -> Callable[..., Trip]:
    """A worker and an API (on `port`, if given) on settings of the test's own, with the
    test's client, simulator and receiver path: a round trip under other settings."""

    def launch(settings: Settings, port: int = 0) -> Trip:
        worker = start_worker(settings)
        return Trip(start_api(settings, port), client, simulator, receiver, hook, worker)

    return launch


@pytest.fixture
def refusing() -> Iterator[Receiver]:
    """A receiver of another origin that refuses everything."""
    hooks = Receiver(default_status=500)
    with ServerThread(hooks.app()) as server:
        hooks.url = server.url
        yield hooks


@pytest.fixture
def hook(receiver: Receiver) -> str:
    """A receiver path of this test's own."""
    return f"/hooks/{uuid.uuid4().hex}"


@pytest.fixture
def trip(
    api: httpx.Client, client: dict[str, str], simulator: Simulator, receiver: Receiver, hook: str
) -> Trip:
    """The usual parts of a round trip, bundled (see tests/flows.py)."""
    return Trip(api, client, simulator, receiver, hook)


@pytest.fixture
def client(redis_url: str) -> dict[str, str]:
    return create_client(redis_url)
