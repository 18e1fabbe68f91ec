"""Receivers that misbehave on purpose, for tests and benchmarks: one that accepts connections
and never answers (a black hole), one that trickles its answer a byte at a time, and many
origins that never answer at all."""

from __future__ import annotations

import socket
import socketserver
import threading
from types import TracebackType


class _Handler(socketserver.BaseRequestHandler):
    server: BadReceiver

    def handle(self) -> None:
        self.server.entered()
        try:
            self.server.behave(self.request)
        except OSError:
            pass  # the tracker gave up on us: that is the point
        finally:
            self.server.left()


class BadReceiver(socketserver.ThreadingTCPServer):
    """A TCP server on 127.0.0.1 that counts connections, at once and at most."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.open = 0
        self.most = 0
        self.total = 0
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def entered(self) -> None:
        with self.lock:
            self.open += 1
            self.total += 1
            self.most = max(self.most, self.open)

    def left(self) -> None:
        with self.lock:
            self.open -= 1

    def behave(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def __enter__(self) -> BadReceiver:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()


class BlackHole(BadReceiver):
    """Accepts every connection, reads what comes, never answers."""

    def behave(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                if not conn.recv(65536):
                    return  # the client closed
            except TimeoutError:
                continue


class Trickler(BadReceiver):
    """Answers 200, one byte every `gap` seconds, so no single read ever times out."""

    def __init__(self, gap: float = 0.4) -> None:
        super().__init__()
        self.gap = gap

    def behave(self, conn: socket.socket) -> None:
        conn.recv(65536)
        answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        for byte in answer:
            if self.stopping.wait(self.gap):
                return
            conn.sendall(bytes([byte]))


class DeadOrigins:
    """`count` distinct origins on 127.0.0.1 (a port each) that take connections and never
    answer: listening sockets nobody accepts on, so the kernel completes each handshake and
    keeps what is sent. A thousand cost a thousand file descriptors and no thread."""

    def __init__(self, count: int) -> None:
        self.sockets: list[socket.socket] = []
        for _ in range(count):
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen(64)
            self.sockets.append(listener)

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{s.getsockname()[1]}/h" for s in self.sockets]

    def __enter__(self) -> DeadOrigins:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for listener in self.sockets:
            listener.close()
