"""`Tracker`: the API, called synchronously (httpx)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx
from httpx_sse import SSEError, connect_sse

from tracker.client.protocol import STREAM_SILENCE, _Request, _Requests, _Stream


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
