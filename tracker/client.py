"""A Python client for the tracker's API, sync (`Tracker`) and async (`AsyncTracker`), and
`verify_webhook` for receivers.

    from tracker.client import Tracker, verify_webhook

    with Tracker("https://tracker.example.com", api_key) as tracker:
        video = tracker.create_video(
            model="veo3.1-fast", prompt="a cat on a skateboard",
            callback_url="https://example.com/hooks", idempotency_key="order-42",
        )
        print(tracker.get(video["task_id"])["state"])

Both classes build each request the same way (`_Requests`, and `_Stream` for following the
event stream); they differ only in how it is sent. Errors come back as `ApiError`, carrying
the problem document's `type`, `status` and `detail`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse, connect_sse

from tracker.core import signing

# How far a webhook's timestamp may be from now (Standard Webhooks' recommendation).
TOLERANCE = 300
# The longest `?wait=` the API takes, and how long a followed event stream may stay silent
# (it sends a heartbeat every 15 s by default) before it is taken for cut and opened again.
MAX_WAIT = 60
STREAM_SILENCE = 60.0
# After a cut, the stream is opened again after this pause, doubling up to the maximum.
RECONNECT_FIRST, RECONNECT_MAX = 0.5, 30.0


class ApiError(Exception):
    """The API refused a request: its problem document."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.type = str(problem.get("type", ""))
        self.detail = str(problem.get("detail", ""))
        self.problem = dict(problem)
        super().__init__(f"{status} {self.type}: {self.detail}")


class WebhookError(Exception):
    """A webhook whose signature or timestamp does not check out."""


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    json: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    params: dict[str, str] | None = None
    timeout: float | None = None  # None: the client's

    def options(self) -> dict[str, Any]:
        """What `httpx.Client.request` (sync or async) takes besides method and path."""
        return {
            "json": self.json,
            "headers": self.headers,
            "params": self.params,
            "timeout": httpx.USE_CLIENT_DEFAULT if self.timeout is None else self.timeout,
        }


def _filters(types: list[str] | None, task_id: str | None) -> dict[str, str]:
    params = {"type": ",".join(types)} if types else {}
    if task_id is not None:
        params["task_id"] = task_id
    return params


class _Stream:
    """Following `/v1/events/stream` across cuts: where to resume, and how long to pause."""

    def __init__(
        self,
        after: str | None,
        types: list[str] | None,
        task_id: str | None,
        on_ready: Callable[[str], None] | None = None,
        on_cut: Callable[[str | None, float], None] | None = None,
    ) -> None:
        self.cursor = after
        self.params = _filters(types, task_id)
        self.pause = RECONNECT_FIRST
        self.on_ready = on_ready
        self.on_cut = on_cut

    @property
    def headers(self) -> dict[str, str]:
        return {"last-event-id": self.cursor} if self.cursor else {}

    def item(self, event: str, data: str, event_id: str) -> dict[str, Any] | None:
        """The feed item an SSE event carries (None for the stream's `ready` event), and the
        cursor to resume from."""
        self.pause = RECONNECT_FIRST
        self.cursor = event_id or self.cursor
        if event == "ready" and self.on_ready is not None and self.cursor:
            self.on_ready(self.cursor)
        if event == "ready" or not data:  # the start, or a blank after a heartbeat comment
            return None
        found = json.loads(data)
        return found if isinstance(found, dict) else None

    def cut(self, error: Exception | None) -> float:
        """The pause before opening the stream again, after it ended or could not be opened
        (`error`: why not), told to `on_cut` with the name of the error (None: it ended)."""
        pause, self.pause = self.pause, min(self.pause * 2, RECONNECT_MAX)
        if self.on_cut is not None:
            self.on_cut(type(error).__name__ if error is not None else None, pause)
        return pause

    @staticmethod
    def refused(response: httpx.Response) -> bool:
        """Whether the stream was refused for good (a 4xx: raise), rather than for now."""
        return 400 <= response.status_code < 500


def _registration(
    callback_url: str | None,
    metadata: Mapping[str, Any] | None,
    events: list[str] | None,
    upstream_key: str | None,
    keep_videos: bool | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": dict(metadata or {})}
    if callback_url is not None:  # none: the events go to the client's feed only
        body["callback_url"] = callback_url
    if events is not None:
        body["events"] = events
    if upstream_key is not None:
        body["upstream_key"] = upstream_key
    if keep_videos is not None:
        body["keep_videos"] = keep_videos
    return body


def _idempotent(key: str | None) -> dict[str, str] | None:
    return {"idempotency-key": key} if key is not None else None


class _Requests:
    """Each call as a request, and each answer as a result: the same for sync and async."""

    @staticmethod
    def create_video(
        model: str,
        prompt: str,
        callback_url: str | None,
        metadata: Mapping[str, Any] | None,
        events: list[str] | None,
        upstream_key: str | None,
        keep_videos: bool | None,
        idempotency_key: str | None,
        create: Mapping[str, Any],
    ) -> _Request:
        body = {"model": model, "prompt": prompt, **create}
        body.update(_registration(callback_url, metadata, events, upstream_key, keep_videos))
        return _Request("POST", "/v1/videos", body, _idempotent(idempotency_key))

    @staticmethod
    def track(
        task_id: str,
        callback_url: str | None,
        metadata: Mapping[str, Any] | None,
        events: list[str] | None,
        upstream_key: str | None,
        keep_videos: bool | None,
        idempotency_key: str | None,
    ) -> _Request:
        registration = _registration(callback_url, metadata, events, upstream_key, keep_videos)
        body = {"task_id": task_id, **registration}
        return _Request("POST", "/v1/tasks", body, _idempotent(idempotency_key))

    @staticmethod
    def list_events(
        after: str | None, limit: int, types: list[str] | None, task_id: str | None
    ) -> _Request:
        params = {"limit": str(limit), **_filters(types, task_id)}
        if after:
            params["after"] = after
        return _Request("GET", "/v1/events", params=params)

    @staticmethod
    def wait(task_id: str, seconds: float) -> _Request:
        wait = max(0, min(MAX_WAIT, int(seconds)))
        return _Request(
            "GET", f"/v1/tasks/{task_id}", params={"wait": str(wait)}, timeout=wait + 30.0
        )

    @staticmethod
    def outputs(task: Mapping[str, Any]) -> list[dict[str, Any]]:
        storage = task.get("storage")
        return list(storage["outputs"]) if storage else []

    @staticmethod
    def result(response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text}
            raise ApiError(response.status_code, problem if isinstance(problem, dict) else {})
        if response.status_code == 204 or not response.content:
            return {}
        found = response.json()
        return found if isinstance(found, dict) else {"result": found}


class Tracker:
    """The API, synchronously. `transport` is for tests (an httpx transport)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.http = httpx.Client(
            base_url=base_url,
            headers={"authorization": f"Bearer {api_key}"},
            timeout=timeout,
            transport=transport,
        )

    def _send(self, request: _Request) -> dict[str, Any]:
        response = self.http.request(request.method, request.path, **request.options())
        return _Requests.result(response)

    def create_video(
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
        """Create a video at QuickRouter and track it: `{"task_id", "subscription"}`. Other
        keyword arguments (`images`, `aspect_ratio`, …) go to QuickRouter's create as they
        are. Send an `idempotency_key` to retry safely."""
        return self._send(
            _Requests.create_video(
                model, prompt, callback_url, metadata, events, upstream_key, keep_videos,
                idempotency_key, create,
            )
        )  # fmt: skip

    def track(
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
        """Track a task created elsewhere: the subscription."""
        return self._send(
            _Requests.track(
                task_id, callback_url, metadata, events, upstream_key, keep_videos,
                idempotency_key,
            )
        )  # fmt: skip

    def get(self, task_id: str) -> dict[str, Any]:
        """The task, with this client's subscriptions, deliveries and attempts."""
        return self._send(_Request("GET", f"/v1/tasks/{task_id}"))

    def outputs(self, task_id: str) -> list[dict[str, Any]]:
        """The task's videos as this client keeps copies of them (`data.outputs` of its
        `video.completed`), with links made now; [] when it keeps none."""
        return _Requests.outputs(self.get(task_id))

    def cancel(self, task_id: str) -> None:
        """Stop tracking the task for this client."""
        self._send(_Request("DELETE", f"/v1/tasks/{task_id}"))

    def redeliver(self, task_id: str) -> dict[str, Any]:
        """Send the task's final event again: `{"deliveries", "was"}`."""
        return self._send(_Request("POST", f"/v1/tasks/{task_id}/redeliver"))

    def wait(self, task_id: str, timeout: float) -> dict[str, Any]:
        """The task once it has ended, or as it is after `timeout` seconds (long polls of at
        most a minute each)."""
        deadline = time.monotonic() + timeout
        while True:
            task = self._send(_Requests.wait(task_id, deadline - time.monotonic()))
            if task.get("state") != "tracking" or deadline - time.monotonic() < 1:
                return task

    def list_events(
        self,
        *,
        after: str | None = None,
        limit: int = 100,
        types: list[str] | None = None,
        task_id: str | None = None,
    ) -> dict[str, Any]:
        """One page of this client's event feed, oldest first: `{"data", "next_cursor",
        "has_more"}`; pass `next_cursor` as `after` for the next."""
        return self._send(_Requests.list_events(after, limit, types, task_id))

    def events(
        self,
        *,
        after: str | None = None,
        types: list[str] | None = None,
        task_id: str | None = None,
        on_ready: Callable[[str], None] | None = None,
        on_cut: Callable[[str | None, float], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """This client's events after cursor `after` (else from when it is first iterated: it
        is a generator), as they are made, for
        as long as you iterate. A cut stream is opened again from the last event seen: no
        gap, no duplicate. Each is a feed item (`cursor`, `type`, `task_id`, `seq`, `body`:
        the webhook's exact bytes as text, `headers`: its signature).

        `on_ready` is told the cursor each opening of the stream starts after (keep it: a
        reader stopped before any event resumes from there); `on_cut`, each time the stream
        ended or could not be opened, the error's name (None: it ended) and the pause before
        the next try."""
        stream = _Stream(after, types, task_id, on_ready, on_cut)
        timeout = httpx.Timeout(self.http.timeout.connect, read=STREAM_SILENCE)
        while True:
            try:
                with connect_sse(
                    self.http, "GET", "/v1/events/stream", params=stream.params,
                    headers=stream.headers, timeout=timeout,
                ) as source:  # fmt: skip
                    if _Stream.refused(source.response):
                        source.response.read()
                        _Requests.result(source.response)
                    if source.response.status_code < 400:
                        for sse in source.iter_sse():
                            item = stream.item(sse.event, sse.data, sse.id)
                            if item is not None:
                                yield item
                error: Exception | None = None
            except (httpx.TransportError, SSEError) as exc:
                error = exc
            time.sleep(stream.cut(error))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


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


def verify_webhook(
    body: bytes, headers: Mapping[str, str], secret: str, *, now: float | None = None
) -> dict[str, Any]:
    """The event of a webhook, once its Standard Webhooks signature (made with the client's
    `whsec_…` secret) and its timestamp (within 5 minutes) check out; else WebhookError."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lowered["webhook-id"]
        timestamp = int(lowered["webhook-timestamp"])
        signatures = lowered["webhook-signature"]
    except (KeyError, ValueError):
        raise WebhookError("missing or malformed webhook-* headers") from None
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE:
        raise WebhookError("the webhook's timestamp is too far from now")
    if not signing.verify(secret, msg_id, timestamp, body, signatures):
        raise WebhookError("no signature matches the secret")
    event = json.loads(body)
    if not isinstance(event, dict):
        raise WebhookError("the webhook's body is not an event")
    return event
