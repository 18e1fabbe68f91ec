"""A webhook receiver that records what it gets: the demo's endpoint, and the tests' and
benchmarks' stand-in for a client's service. Each path can be scripted to answer with a
sequence of status codes before it accepts."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tracker.core import signing

log = logging.getLogger("tracker.receiver")


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    answered: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every POST; answers each path's scripted codes first, then `default_status`."""

    default_status: int = 204
    secret: str | None = None  # when set, each webhook's signature is checked and logged
    url: str = ""  # where it is served, once it is
    received: list[Received] = field(default_factory=list)
    scripts: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    holds: dict[str, float] = field(default_factory=dict)  # path -> seconds before answering
    # webhook-ids being answered now, and those that ever arrived while one was (two senders)
    in_flight: Counter[str] = field(default_factory=Counter)
    overlapped: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, path: str, *statuses: int) -> None:
        """Answer the next POSTs to `path` with `statuses`, in order."""
        with self._lock:
            self.scripts[path].extend(statuses)

    def hold(self, path: str, seconds: float) -> None:
        """Answer POSTs to `path` only after `seconds`: a slow receiver."""
        self.holds[path] = seconds

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def accepted(self, path: str) -> list[Received]:
        return [r for r in self.at(path) if 200 <= r.answered < 300]

    def overlaps(self) -> list[str]:
        """The webhook-ids of which a POST arrived while another was still being answered."""
        with self._lock:
            return list(self.overlapped)

    def open_posts(self) -> int:
        """How many POSTs are being answered now."""
        with self._lock:
            return sum(self.in_flight.values())

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            body = await request.body()
            path = request.url.path
            webhook_id = request.headers.get("webhook-id", "")
            with self._lock:  # recorded on arrival, so a held request shows as in flight
                queued = self.scripts.get(path)
                status = queued.pop(0) if queued else self.default_status
                self.received.append(
                    Received(path, dict(request.headers), body, time.time(), status)
                )
                if webhook_id and self.in_flight[webhook_id]:
                    self.overlapped.append(webhook_id)
                self.in_flight[webhook_id] += 1
            try:
                if path in self.holds:
                    await asyncio.sleep(self.holds[path])
                if self.secret is not None:
                    log.info("webhook %s", _summary(self.secret, request.headers, body))
                # A refusal says why, as receivers do: what the attempt records show.
                said = b"" if status < 300 else json.dumps({"refused": status}).encode()
                return Response(
                    said, status_code=status, headers={"x-receiver": "tracker-devtools"},
                    media_type="application/json" if said else None,
                )  # fmt: skip
            finally:
                with self._lock:
                    self.in_flight[webhook_id] -= 1

        async def listing(request: Request) -> Response:
            with self._lock:
                items = [
                    {"path": r.path, "at": r.at, "answered": r.answered, "body": r.json()}
                    for r in self.received
                ]
            return JSONResponse(items)

        return Starlette(
            routes=[
                Route("/webhooks", listing, methods=["GET"]),
                Route("/{path:path}", receive, methods=["POST"]),
            ]
        )


def _summary(secret: str, headers: Any, body: bytes) -> str:
    try:
        verified = signing.verify(
            secret,
            headers.get("webhook-id", ""),
            int(headers.get("webhook-timestamp", "0")),
            body,
            headers.get("webhook-signature", ""),
        )
        event = json.loads(body)
        data = event.get("data", {})
        return (
            f"{event.get('type')} task={data.get('task_id')} "
            f"video_url={data.get('video_url')} error={data.get('error')} "
            f"signature={'valid' if verified else 'INVALID'}"
        )
    except (ValueError, AttributeError):
        return f"unreadable body ({len(body)} bytes)"
