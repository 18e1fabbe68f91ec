"""Running ASGI apps on uvicorn inside a program: in the current event loop, or in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

# The scope key under which `Connections` puts a request's connection (its asyncio transport).
TRANSPORT = "qrtracker.transport"


class Connections:
    """An ASGI wrapper that puts each HTTP request's connection in its scope, so a handler can
    abort it (`abort_connection`): a reader that stalls is cut off with its buffers dropped at
    once, where closing would keep flushing them to it for as long as it trickles.

    uvicorn's `send` is a method of the request's cycle, which holds the transport; under
    another server nothing is found, and `abort_connection` does nothing.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            if isinstance(transport, asyncio.Transport):
                scope[TRANSPORT] = transport
        await self.app(scope, receive, send)


def abort_connection(scope: Any) -> bool:
    """Drop the request's connection now, unsent bytes and all; False if it is not known."""
    transport = scope.get(TRANSPORT)
    if not isinstance(transport, asyncio.Transport):
        return False
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0: the close resets the connection, and the kernel drops what it still
        # holds for the peer too (a plain close would go on sending it, FIN last).
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    return True


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals to its host program (`qrtracker up`, tests)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    @property
    def port(self) -> int:
        return int(self.servers[0].sockets[0].getsockname()[1])


def config(app: Any, host: str = "127.0.0.1", port: int = 0) -> uvicorn.Config:
    return uvicorn.Config(
        Connections(app), host=host, port=port, log_level="warning", lifespan="on", access_log=False
    )


async def start(
    app: Any, host: str = "127.0.0.1", port: int = 0
) -> tuple[EmbeddedServer, asyncio.Task[None]]:
    """Serve `app` in this loop; returns once it listens. Stop with `should_exit = True`."""
    server = EmbeddedServer(config(app, host, port))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # re-raise why it could not start
            raise RuntimeError("server stopped before it started")
        await asyncio.sleep(0.01)
    return server, task


class ServerThread:
    """Serve `app` from a thread of its own, for synchronous callers such as tests."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = EmbeddedServer(config(app, host, port))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.host = host

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.server.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server thread did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
