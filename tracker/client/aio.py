"""`AsyncTracker`: the API, called from asyncio (httpx)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse

from tracker.client.protocol import STREAM_SILENCE, _Request, _Requests, _Stream


class AsyncTracker:
    """The API, asynchronously; the same calls as `Tracker`, awaited."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url,
            headers={"authorization": f"Bearer {api_key}"},
            timeout=timeout,
            transport=transport,
        )

    async def _send(self, request: _Request) -> dict[str, Any]:
        response = await self.http.request(request.method, request.path, **request.options())
        return _Requests.result(response)

    async def create_video(
        self,
        *,
        model: str,
        prompt: str,
        callback_url: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        events: list[str] | None = None,
        upstream_key: str | None = None,
        keep_videos: bool | None = None,
        idempotency_key: str | None = None,
        **create: Any,
    ) -> dict[str, Any]:
        """As `Tracker.create_video`."""
        return await self._send(
            _Requests.create_video(
                model, prompt, callback_url, metadata, events, upstream_key, keep_videos,
                idempotency_key, create,
            )
        )  # fmt: skip

    async def track(
        self,
        task_id: str,
        callback_url: str | None = None,
        *,
        metadata: Mapping[str, Any] | None = None,
        events: list[str] | None = None,
        upstream_key: str | None = None,
        keep_videos: bool | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """As `Tracker.track`."""
        return await self._send(
            _Requests.track(
                task_id, callback_url, metadata, events, upstream_key, keep_videos,
                idempotency_key,
            )
        )  # fmt: skip

    async def get(self, task_id: str) -> dict[str, Any]:
        return await self._send(_Request("GET", f"/v1/tasks/{task_id}"))

    async def outputs(self, task_id: str) -> list[dict[str, Any]]:
        """As `Tracker.outputs`."""
        return _Requests.outputs(await self.get(task_id))

    async def cancel(self, task_id: str) -> None:
        await self._send(_Request("DELETE", f"/v1/tasks/{task_id}"))

    async def redeliver(self, task_id: str) -> dict[str, Any]:
        return await self._send(_Request("POST", f"/v1/tasks/{task_id}/redeliver"))

    # The same signature as `Tracker.wait`: the time-out bounds the server's long polls.
    async def wait(self, task_id: str, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        """As `Tracker.wait`."""
        deadline = time.monotonic() + timeout
        while True:
            task = await self._send(_Requests.wait(task_id, deadline - time.monotonic()))
            if task.get("state") != "tracking" or deadline - time.monotonic() < 1:
                return task

    async def list_events(
        self,
        *,
        after: str | None = None,
        limit: int = 100,
        types: list[str] | None = None,
        task_id: str | None = None,
    ) -> dict[str, Any]:
        """As `Tracker.list_events`."""
        return await self._send(_Requests.list_events(after, limit, types, task_id))

    async def events(
        self,
        *,
        after: str | None = None,
        types: list[str] | None = None,
        task_id: str | None = None,
        on_ready: Callable[[str], None] | None = None,
        on_cut: Callable[[str | None, float], None] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """As `Tracker.events`."""
        stream = _Stream(after, types, task_id, on_ready, on_cut)
        timeout = httpx.Timeout(self.http.timeout.connect, read=STREAM_SILENCE)
        while True:
            try:
                async with aconnect_sse(
                    self.http, "GET", "/v1/events/stream", params=stream.params,
                    headers=stream.headers, timeout=timeout,
                ) as source:  # fmt: skip
                    if _Stream.refused(source.response):
                        await source.response.aread()
                        _Requests.result(source.response)
                    if source.response.status_code < 400:
                        async for sse in source.aiter_sse():
                            item = stream.item(sse.event, sse.data, sse.id)
                            if item is not None:
                                yield item
                error: Exception | None = None
            except (httpx.TransportError, SSEError) as exc:
                error = exc
            await asyncio.sleep(stream.cut(error))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncTracker:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
