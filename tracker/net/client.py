"""The HTTP client to QuickRouter (polls from the workers, creates from the API), and the two
requests made there.

Requests go over aiohttp directly: measured side by side, httpx's API alone halved aiohttp's
rate for these GETs (see docs/performance.md), and a worker's polls are bound by
its CPU. `Upstream` is the small interface the calls need, so tests can answer from a local
transport instead. Webhooks do not go through this client: `tracker.net.callbacks` sends them,
behind the address guard.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from tracker import __version__, metrics
from tracker.core.numerals import whole_number
from tracker.core.upstream import (
    MAX_ANSWER_BYTES,
    Created,
    CreateRefused,
    Outcome,
    TryLater,
    read_create,
    read_response,
)
from tracker.settings import Settings


@dataclass(frozen=True)
class Reply:
    """QuickRouter's answer: its status, headers (case-insensitive) and body, or None for a
    body past MAX_ANSWER_BYTES (the rest never read, so a huge answer costs no memory)."""

    status: int
    headers: Mapping[str, str]
    body: bytes | None


class NotSent(Exception):
    """The request never reached QuickRouter (no connection): nothing was made."""


class Unanswered(Exception):
    """The request may have reached QuickRouter, but no whole answer came back."""


class Upstream(Protocol):
    """One request to QuickRouter, all of it within `time_limit`: a Reply; or NotSent,
    TimeoutError or Unanswered."""

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        time_limit: float,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Reply: ...

    async def aclose(self) -> None: ...


class AiohttpUpstream:
    """The process's long-lived connection pool to QuickRouter (one per API or worker)."""

    def __init__(self, connections: int) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections),
            headers={"user-agent": f"quickrouter-tracker/{__version__}"},
        )

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
        limits = aiohttp.ClientTimeout(total=time_limit, sock_connect=time_limit)
        try:
            async with self.session.request(
                method, url, params=params, data=body, headers=headers, timeout=limits,
                allow_redirects=False,
            ) as response:  # fmt: skip
                return Reply(response.status, response.headers, await _capped(response))
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise NotSent(type(exc).__name__) from None
        except aiohttp.ServerTimeoutError:
            raise TimeoutError from None
        except aiohttp.ClientError as exc:
            raise Unanswered(type(exc).__name__) from None

    async def aclose(self) -> None:
        await self.session.close()

    async def __aenter__(self) -> AiohttpUpstream:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


async def _capped(response: aiohttp.ClientResponse) -> bytes | None:
    declared = whole_number(response.headers.get("content-length", ""))
    if declared is not None and declared > MAX_ANSWER_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def http_client(settings: Settings) -> AiohttpUpstream:
    """A process's client to the upstream; each call sets its own time-out. Made inside the
    running event loop (the API's lifespan, the worker's start-up)."""
    return AiohttpUpstream(settings.worker_concurrency)


async def query_upstream(
    http: Upstream,
    settings: Settings,
    task_id: str,
    *,
    seen_running: bool,
    clock: Callable[[], float],
    key: str | None,
) -> Outcome:
    """Ask QuickRouter once about `task_id` with `key`; transport failures mean "try later".
    `clock` tells the fleet's time (`tracker.store.clock`)."""
    started = time.perf_counter()
    try:
        reply = await http.send(
            "GET",
            settings.quickrouter_base_url.rstrip("/") + "/v1/video/query",
            params={"id": task_id},
            headers=_headers(key),
            time_limit=settings.upstream_timeout,
        )
    except TimeoutError:
        metrics.UPSTREAM_RESPONSES.labels("timeout").inc()
        return TryLater("upstream timed out")
    except (NotSent, Unanswered) as exc:
        metrics.UPSTREAM_RESPONSES.labels("error").inc()
        return TryLater(f"upstream unreachable ({exc})")
    finally:
        metrics.UPSTREAM_SECONDS.observe(time.perf_counter() - started)
    if reply.body is None:
        metrics.UPSTREAM_RESPONSES.labels("oversized").inc()
        return TryLater(f"upstream answer is larger than {MAX_ANSWER_BYTES} bytes")
    metrics.UPSTREAM_RESPONSES.labels(str(reply.status)).inc()
    return read_response(
        reply.status, reply.headers, reply.body, seen_running=seen_running, now=clock()
    )


def _headers(key: str | None) -> dict[str, str]:
    headers = {"accept": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    return headers


async def create_video(
    http: Upstream, settings: Settings, body: bytes, *, key: str | None
) -> Created | CreateRefused | None:
    """POST QuickRouter's create once with `key`: the task made, a refusal, or None when the
    outcome is unknown (a time-out once sent, a 5xx, an answer without an id: the task may
    exist). Raises NotSent if no connection was made."""
    try:
        reply = await http.send(
            "POST",
            settings.quickrouter_base_url.rstrip("/") + "/v1/video/create",
            headers={**_headers(key), "content-type": "application/json"},
            body=body,
            time_limit=settings.upstream_timeout,
        )
    except (TimeoutError, Unanswered):
        return None
    return read_create(reply.status, reply.body or b"")
