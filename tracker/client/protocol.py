"""What each call of the API sends and how its answer reads, shared by `Tracker` and
`AsyncTracker` (which differ only in how they send): the requests (`_Requests`), the event
stream's reading and reconnecting (`_Stream`), and `ApiError`."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

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
