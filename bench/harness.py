"""The parts every benchmark runs on: Redis, the simulator, a receiver, API and worker processes.

Everything listens on 127.0.0.1. The API and workers are real `qrtracker` processes, so their
CPU time and peak memory can be read from /proc.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from tracker.core.vault import new_key
from tracker.devtools.receiver import Receiver
from tracker.embedded_redis import EmbeddedRedis, free_port
from tracker.server import ServerThread
from tracker.settings import Settings

SIM_KEY = "bench-key"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def cpu_seconds(pid: int) -> float:
    """The CPU seconds process `pid` has spent, user and system, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@dataclass
class Process:
    """A `qrtracker` child process, with its CPU seconds and peak memory from /proc."""

    popen: subprocess.Popen[bytes]
    name: str

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.popen.pid)

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()


class SimClient:
    """The simulator, running as its own process, driven over HTTP."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=60)

    def script(self, specs: list[dict[str, object]]) -> list[dict[str, object]]:
        tasks: list[dict[str, object]] = []
        for start in range(0, len(specs), 1000):
            answer = self.http.post("/sim/tasks", json={"tasks": specs[start : start + 1000]})
            answer.raise_for_status()
            tasks += answer.json()["tasks"]
        return tasks

    def tasks(self) -> dict[str, dict[str, object]]:
        return {t["task_id"]: t for t in self.http.get("/sim/tasks").json()["tasks"]}


@dataclass
class Rig:
    redis: EmbeddedRedis
    simulator: SimClient
    receiver: Receiver
    settings: Settings
    processes: list[Process] = field(default_factory=list)

    def start(self, command: str, name: str, *args: str) -> Process:
        env = {**os.environ, **self.settings.to_env()}
        popen = subprocess.Popen(
            [sys.executable, "-m", "tracker.cli", command, *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        process = Process(popen, name)
        self.processes.append(process)
        return process

    def api(self) -> tuple[Process, str]:
        port = free_port()
        process = self.start("api", "api", "--port", str(port))
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url + "/readyz")
        return process, url

    def client(self) -> dict[str, str]:
        import asyncio

        from tracker.core.vault import vault_of
        from tracker.store import store_for
        from tracker.store.connection import connect

        async def create() -> dict[str, str]:
            pool = connect(str(self.settings.redis_url))
            store = store_for(self.settings, pool, patient=False, vault=vault_of(self.settings))
            client, key = await store.clients.create("bench", time.time())
            await store.aclose()
            await pool.aclose()
            return {"id": client.id, "api_key": key, "secret": client.secret}

        return asyncio.run(create())

    def redis_memory(self) -> int:
        with redis.Redis.from_url(self.redis.url) as conn:
            return int(conn.info("memory")["used_memory"])


def lags_at(r: Rig, path: str, task_ids: list[str], timeout: float) -> list[float]:
    """Wait for a webhook of each task at the receiver's `path`; each one's lag: when it
    was received less when the simulator turned its task final (real seconds)."""
    deadline = time.monotonic() + timeout
    while len(r.receiver.accepted(path)) < len(task_ids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(r.receiver.accepted(path))}/{len(task_ids)} webhooks")
        time.sleep(0.1)
    final = r.simulator.tasks()
    arrived = {h.json()["data"]["task_id"]: h.at for h in r.receiver.accepted(path)}
    return [arrived[t] - float(final[t]["final_at"]) for t in task_ids]  # type: ignore[arg-type]


def on_clock(speed: float) -> dict[str, float]:
    """The default settings' times, for a simulator whose clock runs `speed` times real time."""
    defaults = Settings()
    return {
        name: getattr(defaults, name) / speed
        for name in ("poll_first_delay", "poll_max_delay", "poll_deadline",
                     "poll_adaptive_max_delay", "poll_unlearned_max_delay", "poll_loop_interval",
                     "poll_window_gap", "learning_refresh")
    }  # fmt: skip


def wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.05)


@contextlib.contextmanager
def rig(speed: float = 1.0, **changes: object) -> Iterator[Rig]:
    """Redis, the simulator (its clock `speed` times real time) and a receiver, all on loopback."""
    with contextlib.ExitStack() as stack:
        data = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        server = stack.enter_context(EmbeddedRedis(data / "redis"))
        sim_port = free_port()
        sim_process = subprocess.Popen(
            [sys.executable, "-m", "tracker.cli", "simulate", "--port", str(sim_port),
             "--api-key", SIM_KEY, "--speed", str(speed)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        stack.callback(Process(sim_process, "simulator").stop)
        sim = SimClient(f"http://127.0.0.1:{sim_port}")
        wait_until_up(sim.url + "/sim/tasks")
        hooks = Receiver()
        hooks.url = stack.enter_context(ServerThread(hooks.app())).url
        settings = Settings(
            redis_url=server.url,
            quickrouter_base_url=sim.url,
            quickrouter_api_key=SIM_KEY,
            allow_private_callbacks=True,
            registration_rate=10**9,
            encryption_keys=new_key(),
        )
        built = Rig(server, sim, hooks, dataclasses.replace(settings, **changes))  # type: ignore[arg-type]
        try:
            yield built
        finally:
            for process in built.processes:
                process.stop()
