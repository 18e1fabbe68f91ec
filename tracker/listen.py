"""`qrtracker listen`: follow a client's event stream and POST each event to a local URL as
the webhook itself (the same `webhook-id`, body and Standard Webhooks signature), for a
receiver that has no public address, as `stripe listen` and `svix listen` do.

Where it stopped is kept in a cursor file after every event, so a restart goes on from
there: no event is skipped, and one is forwarded twice only if the process died between
forwarding it and writing the file (receivers dedupe on `webhook-id` anyway).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tracker.client import Tracker


def cursor_file(data_dir: Path, api_url: str, api_key: str) -> Path:
    """Where a listener for this API and this client keeps its cursor, by default."""
    digest = hashlib.sha256(f"{api_url}\n{api_key}".encode()).hexdigest()[:16]
    return data_dir / f"listen-{digest}.cursor"


def read_cursor(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def write_cursor(path: Path, cursor: str) -> None:
    """Replace the file at once (write, then rename), so a crash never leaves half a cursor."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(cursor)
    os.replace(partial, path)


def forward(http: httpx.Client, url: str, item: dict[str, Any]) -> str:
    """POST one feed item's webhook to `url`: its status code, or the error that stopped it."""
    headers = {"content-type": "application/json", **item["headers"]}
    try:
        response = http.post(url, content=item["body"].encode(), headers=headers)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return str(response.status_code)


def line(item: dict[str, Any], outcome: str) -> str:
    """What `listen` prints for one event."""
    return f"{clock()}  {item['type']:<22} {item['task_id']}  -> {outcome}  [{item['cursor']}]"


def listen(
    tracker: Tracker,
    forward_to: str,
    cursor_path: Path,
    *,
    after: str | None,
    types: list[str] | None,
    task_id: str | None,
    echo: Callable[[str], None],
    http: httpx.Client,
) -> None:
    """Forward events for ever (until interrupted), from `after`, else from the cursor file,
    else from now. The cursor each opening of the stream starts after is kept at once, so a
    listener stopped before any event resumes from there; an API that cannot be reached is
    said once when it goes and once when it is back (the tries go on, pausing 0.5 s to 30 s).
    A refused key (401, 403) raises ApiError."""
    unreachable = False

    def ready(cursor: str) -> None:
        nonlocal unreachable
        write_cursor(cursor_path, cursor)
        if unreachable:
            echo(f"{clock()}  the API is reachable again; following from {cursor}")
            unreachable = False

    def cut(error: str | None, pause: float) -> None:
        nonlocal unreachable
        if error is not None and not unreachable:
            echo(f"{clock()}  cannot reach the API ({error}); trying again, pausing up to 30 s")
            unreachable = True

    start = after or read_cursor(cursor_path)
    for item in tracker.events(
        after=start, types=types, task_id=task_id, on_ready=ready, on_cut=cut
    ):
        echo(line(item, forward(http, forward_to, item)))
        write_cursor(cursor_path, item["cursor"])


def clock() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S")
