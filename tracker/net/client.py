"""The worker's HTTP client to QuickRouter, and the one request it makes there.

Requests go over aiohttp under httpx's interface (httpx's own transport makes several times
fewer requests per CPU second; see the README's Performance section). Webhooks do not go
through this client: `tracker.net.callbacks` sends them, behind the address guard.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from httpx_aiohttp import AiohttpTransport

from tracker import __version__, metrics
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


def http_client(settings: Settings) -> httpx.AsyncClient:
    """A worker's long-lived client to the upstream; each call sets its own time-out."""
    return httpx.AsyncClient(
        transport=AiohttpTransport(
            limits=httpx.Limits(max_connections=settings.worker_concurrency)
        ),
        timeout=httpx.Timeout(settings.upstream_timeout),
        follow_redirects=False,
        headers={"user-agent": f"quickrouter-tracker/{__version__}"},
    )


async def query_upstream(
    http: httpx.AsyncClient,
    settings: Settings,
    task_id: str,
    *,
    seen_running: bool,
    clock: Callable[[], float],
    key: str | None,
) -> Outcome:
    """Ask QuickRouter once about `task_id` with `key`; transport failures mean "try later".
    `clock` tells the fleet's time (`tracker.store.clock`)."""
    headers = _headers(key)
    started = time.perf_counter()
    try:
        async with http.stream(
            "GET",
            settings.quickrouter_base_url.rstrip("/") + "/v1/video/query",
            params={"id": task_id},
            headers=headers,
            timeout=settings.upstream_timeout,
        ) as response:
            body = await read_capped(response, MAX_ANSWER_BYTES)
    except httpx.TimeoutException:
        metrics.UPSTREAM_RESPONSES.labels("timeout").inc()
        return TryLater("upstream timed out")
    except httpx.HTTPError as exc:
        metrics.UPSTREAM_RESPONSES.labels("error").inc()
        return TryLater(f"upstream unreachable ({type(exc).__name__})")
    finally:
        metrics.UPSTREAM_SECONDS.observe(time.perf_counter() - started)
    if body is None:
        metrics.UPSTREAM_RESPONSES.labels("oversized").inc()
        return TryLater(f"upstream answer is larger than {MAX_ANSWER_BYTES} bytes")
    metrics.UPSTREAM_RESPONSES.labels(str(response.status_code)).inc()
    return read_response(
        response.status_code,
        response.headers,
        body,
        seen_running=seen_running,
        now=clock(),
    )


async def read_capped(response: httpx.Response, limit: int) -> bytes | None:
    """The body, read as it streams in; None as soon as it passes `limit` bytes (the rest is
    never read, so a huge answer costs no memory)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _headers(key: str | None) -> dict[str, str]:
    headers = {"accept": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    return headers


class NotSent(Exception):
    """The request never reached QuickRouter (no connection): nothing was made."""


async def create_video(
    http: httpx.AsyncClient, settings: Settings, body: bytes, *, key: str | None
) -> Created | CreateRefused | None:
    """POST QuickRouter's create once with `key`: the task made, a refusal, or None when the
    outcome is unknown (a time-out once sent, a 5xx, an answer without an id: the task may
    exist). Raises NotSent if no connection was made."""
    headers = {**_headers(key), "content-type": "application/json"}
    try:
        async with http.stream(
            "POST",
            settings.quickrouter_base_url.rstrip("/") + "/v1/video/create",
            content=body,
            headers=headers,
            timeout=settings.upstream_timeout,
        ) as response:
            answer = await read_capped(response, MAX_ANSWER_BYTES)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise NotSent(type(exc).__name__) from None
    except httpx.HTTPError:
        return None
    return read_create(response.status_code, answer or b"")
