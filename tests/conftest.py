"""Real parts for the tests: an embedded Redis, the simulator, a receiver, the API, a worker."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import redis
from click.testing import CliRunner

from tracker.api import create_app
from tracker.cli import main
from tracker.embedded_redis import EmbeddedRedis
from tracker.receiver import Receiver
from tracker.server import ServerThread
from tracker.settings import Settings
from tracker.simulator import Simulator

if TYPE_CHECKING:
    from tests.flows import Trip

SIM_KEY = "sim-test-key"


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def simulator() -> Iterator[Simulator]:
    sim = Simulator(api_key=SIM_KEY, slow_delay=1.5, default_duration=0.3)
    with ServerThread(sim.app()) as server:
        sim.url = server.url
        yield sim


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    hooks = Receiver()
    with ServerThread(hooks.app()) as server:
        hooks.url = server.url
        yield hooks


def fast_settings(redis_url: str, simulator: Simulator, **changes: Any) -> Settings:
    """Settings with every clock compressed so a round trip takes well under a second."""
    base = Settings(
        redis_url=redis_url,
        quickrouter_base_url=simulator.url,
        quickrouter_api_key=SIM_KEY,
        allow_private_callbacks=True,
        poll_first_delay=0.05,
        poll_factor=1.5,
        poll_max_delay=0.2,
        poll_deadline=20.0,
        rejection_limit=3,
        upstream_timeout=0.5,
        delivery_timeout=2.0,
        delivery_schedule=(0.05, 0.1, 0.1),
        sweep_interval=1,
        sweep_grace=0.5,
        queue_poll_interval=0.02,
        shutdown_grace=2.0,
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture
def settings(redis_url: str, simulator: Simulator) -> Settings:
    return fast_settings(redis_url, simulator)


class WorkerProcess:
    """`qrtracker worker` as a real child process."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.log_path = log_path
        env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tracker.cli", "worker"],
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
def start_api() -> Iterator[Callable[[Settings], httpx.Client]]:
    stack: list[tuple[ServerThread, httpx.Client]] = []

    def start(settings: Settings) -> httpx.Client:
        server = ServerThread(create_app(settings)).__enter__()
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
def hook(receiver: Receiver) -> str:
    """A receiver path of this test's own."""
    return f"/hooks/{uuid.uuid4().hex}"


@pytest.fixture
def trip(
    api: httpx.Client, client: dict[str, str], simulator: Simulator, receiver: Receiver, hook: str
) -> Trip:
    """The usual parts of a round trip, bundled (see tests/flows.py)."""
    from tests.flows import Trip

    return Trip(api, client, simulator, receiver, hook)


def create_client(redis_url: str, name: str = "acme") -> dict[str, str]:
    """A client made the way an operator makes one: `qrtracker clients create NAME --json`."""
    result = CliRunner().invoke(
        main, ["clients", "create", name, "--json"], env={"REDIS_URL": redis_url}
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)  # type: ignore[no-any-return]


@pytest.fixture
def client(redis_url: str) -> dict[str, str]:
    return create_client(redis_url)


def auth(client: dict[str, str]) -> dict[str, str]:
    return {"authorization": f"Bearer {client['api_key']}"}
