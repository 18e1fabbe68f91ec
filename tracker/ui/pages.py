"""The dashboard's pages: a client's tasks and each task's timeline, result, deliveries and
attempts (with Redeliver), and the operator's view of the fleet, its clients and the
destinations that fail. Server-rendered (Jinja2, autoescaped); every POST carries the
session's CSRF token."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from tracker.core.events import iso_time
from tracker.core.origins import origin_of
from tracker.core.records import Client, TaskState
from tracker.errors import TrackerError
from tracker.links import copies_of
from tracker.settings import Settings
from tracker.store import Shard, Store
from tracker.store.sessions import SIGN_IN_WINDOW
from tracker.ui import charts, times
from tracker.ui.session import Viewer, csrf_ok, csrf_token, sign_in, sign_out, viewer

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.globals.update(
    iso=iso_time, origin_of=origin_of, when=lambda at: times.when(at, time.time())
)
# JSON as plain text, so autoescaping shows `<` as `<` (Jinja's `tojson` writes `\u003c`).
templates.env.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False)

log = logging.getLogger("tracker.ui")

PAGE = 20
SEARCH_SCAN = 1000  # the newest tasks a metadata search looks through


def root(request: Request) -> str:
    """Where the dashboard is mounted (`/ui`), for links."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def render(
    request: Request, name: str, who: Viewer | None, code: int = 200, **context: Any
) -> Response:
    return templates.TemplateResponse(
        request,
        name,
        {"viewer": who, "csrf": csrf_token(request), "root": root(request), **context},
        status_code=code,
    )


def failure(request: Request, who: Viewer | None, status: int, message: str) -> Response:
    return render(request, "error.html", who, status, status=status, message=message)


def back(request: Request, path: str) -> Response:
    return RedirectResponse(root(request) + path, status_code=303)


async def posted(request: Request) -> FormData | None:
    """The form of a POST, if it carries the session's CSRF token."""
    form = await request.form()
    return form if csrf_ok(request, form.get("csrf")) else None


# -- signing in and out --------------------------------------------------------------------


async def home(request: Request) -> Response:
    who = await viewer(request)
    if who is None:
        return back(request, "/login")
    return back(request, "/operator" if who.operator else "/tasks")


async def login(request: Request) -> Response:
    if request.method == "GET":
        return render(request, "login.html", None)
    settings: Settings = request.app.state.settings
    store: Store = request.app.state.store
    address = request.client.host if request.client else "unknown"
    limit, now = settings.ui_sign_ins_per_minute, store.clock.now()
    # Checked before the form is read: a guesser past its limit learns nothing more.
    if await store.sessions.sign_ins_refused(address, now, limit):
        return refused_sign_in(request, address, now)
    form = await posted(request)
    if form is None:
        return failure(request, None, 403, "The form was stale; sign in again.")
    who = await sign_in(request, str(form.get("secret", "")).strip())
    if who is None:
        log.warning("a dashboard sign-in failed", extra={"address": address})
        await store.sessions.count_failed_sign_in(address, now)
        return render(request, "login.html", None, 401, error="No client holds that key.")
    return back(request, "/operator" if who.operator else "/tasks")


def refused_sign_in(request: Request, address: str, now: float) -> Response:
    log.warning("dashboard sign-ins refused: too many failed", extra={"address": address})
    response = failure(request, None, 429, "Too many failed sign-ins; try again in a minute.")
    response.headers["retry-after"] = str(SIGN_IN_WINDOW - int(now % SIGN_IN_WINDOW))
    return response


async def logout(request: Request) -> Response:
    """Sign out (a POST with the form's token). A GET (a typed or followed link) signs nobody
    out, since a link from anywhere could: it goes to the start page, whose header has the
    sign-out button."""
    if request.method == "GET":
        return back(request, "/")
    if await posted(request) is not None:
        await sign_out(request)
    return back(request, "/login")


# -- a client's view ---------------------------------------------------------------------------


Endpoint = Callable[[Request], Awaitable[Response]]


def for_client(page: Callable[[Request, Viewer, Client], Awaitable[Response]]) -> Endpoint:
    """A page a signed-in client sees (others are sent to sign in, or to their own page)."""

    async def endpoint(request: Request) -> Response:
        who = await viewer(request)
        if who is None:
            return back(request, "/login")
        if who.client is None:
            return back(request, "/operator")
        return await page(request, who, who.client)

    return endpoint


def for_operator(page: Callable[[Request, Viewer], Awaitable[Response]]) -> Endpoint:
    """A page only the operator sees."""

    async def endpoint(request: Request) -> Response:
        who = await viewer(request)
        if who is None:
            return back(request, "/login")
        if not who.operator:
            return failure(request, who, 403, "The operator's page needs the operator token.")
        return await page(request, who)

    return endpoint


@for_client
async def tasks_page(request: Request, who: Viewer, client: Client) -> Response:
    store: Shard = request.app.state.store.shard(client.id)
    params = request.query_params
    state = params.get("state") or ""
    wanted = TaskState(state) if state in set(TaskState) else None
    q = params.get("q", "").strip()
    searched = 0
    next_cursor = None
    total = await store.task_index.count_for_client(client.id)
    if q:
        tasks = await store.task_index.search_for_client(client.id, q, SEARCH_SCAN, PAGE, wanted)
        # Said only when it matters: past that many, older tasks were not searched.
        searched = SEARCH_SCAN if total > SEARCH_SCAN else 0
    else:
        tasks, after = await store.task_index.list_for_client(
            client.id, before=_cursor(params.get("cursor", "")), limit=PAGE, state=wanted
        )
        next_cursor = repr(after) if after is not None else None
    return render(
        request, "tasks.html", who, tasks=tasks, q=q, state=state, states=list(TaskState),
        searched=searched, next_cursor=next_cursor, total=total,
        troubles=await store.deliveries.webhook_troubles(client.id, [t for t, _ in tasks]),
        paged=bool(params.get("cursor")),
    )  # fmt: skip


def _cursor(raw: str) -> float | None:
    """Where a page of tasks starts: the registration time a page gave as its next cursor.
    Anything else (NaN too, which Redis refuses as a bound) starts at the newest."""
    try:
        before = float(raw)
    except ValueError:
        return None
    return before if math.isfinite(before) else None


@for_client
async def task_page(request: Request, who: Viewer, client: Client) -> Response:
    return await task_of(request, who, client.id, request.path_params["task_id"])


async def task_of(
    request: Request, who: Viewer, client_id: str, task_id: str, *, looking: str = ""
) -> Response:
    """One client's task, as it sees it; with `looking` (the client's name), as the operator
    sees it: the same, with nothing to act on."""
    store: Shard = request.app.state.store.shard(client_id)
    owned = await store.tasks.owned(client_id, task_id)
    if owned is None:
        return failure(request, who, 404, "No such task for this client.")
    task, mine = owned
    now = store.clock.now()
    views, destinations = await store.task_view(client_id, task, mine, now)
    end = task.updated_at if task.state is not TaskState.TRACKING else now
    timeline = ""
    steps = charts.with_final(task.history, task.upstream_status, task.state.is_final, end)
    if steps:
        timeline = charts.timeline(steps, task.created_at, end, task.polls)
    pending = any(d.state == "pending" for v in views for d, _ in v.deliveries)
    settings: Settings = request.app.state.settings
    copies = await copies_of(
        store, request.app.state.stores, client_id, task, settings.storage_link_ttl
    )
    copying = copies is not None and copies["state"] == "copying"
    return render(
        request, "task.html", who, task=task, views=views, destinations=destinations,
        timeline=timeline, live=task.state is TaskState.TRACKING or pending or copying,
        copies=copies, looking=looking, looked_at=client_id,
    )  # fmt: skip


@for_client
async def destinations_page(request: Request, who: Viewer, client: Client) -> Response:
    store: Shard = request.app.state.store.shard(client.id)
    now = store.clock.now()
    found = [d.view(now) for d in await store.origins.destinations(client.id, now)]
    charts_by_origin = {d["origin"]: _day_chart(d) for d in found}
    return render(request, "destinations.html", who, destinations=found, charts=charts_by_origin)


WAITING_SHOWN = 50  # deliveries a destination's page lists


@for_client
async def destination_page(request: Request, who: Viewer, client: Client) -> Response:
    """`/destination?origin=…`: one destination, with the deliveries waiting for it."""
    store: Shard = request.app.state.store.shard(client.id)
    now = store.clock.now()
    origin = request.query_params.get("origin", "")
    found = [d for d in await store.origins.destinations(client.id, now) if d.origin == origin]
    if not found:
        return failure(request, who, 404, "No such destination in the last two days.")
    shown = found[0].view(now)
    waiting = await store.deliveries.with_last_attempt(
        await store.origins.waiting(client.id, origin, WAITING_SHOWN)
    )
    return render(
        request, "destination.html", who, d=shown, waiting=waiting,
        chart=_day_chart(shown),
    )  # fmt: skip


def _day_chart(destination: dict[str, Any]) -> str:
    return charts.hourly(
        [(h["start"][11:16], h["delivered"], h["failed"]) for h in destination["hours"]],
        f"Attempts to {destination['origin']} by the hour, the last day",
    )


@for_client
async def enable_destination(request: Request, who: Viewer, client: Client) -> Response:
    form = await posted(request)
    if form is None:
        return failure(request, who, 403, "The form was stale; reload the page.")
    settings: Settings = request.app.state.settings
    store: Shard = request.app.state.store.shard(client.id)
    now = store.clock.now()
    origin = origin_of(str(form.get("origin", "")))
    await store.enable_destination(
        client.id, origin, now, since=now - settings.retention, limit=1000, scan=20_000
    )
    return back(request, "/destinations")


@for_client
async def redeliver(request: Request, who: Viewer, client: Client) -> Response:
    if await posted(request) is None:
        return failure(request, who, 403, "The form was stale; reload the page.")
    settings: Settings = request.app.state.settings
    store: Shard = request.app.state.store.shard(client.id)
    task_id = request.path_params["task_id"]
    owned = await store.tasks.owned(client.id, task_id)
    if owned is None:
        return failure(request, who, 404, "No such task for this client.")
    try:
        await store.redeliver_final(
            client.id, *owned, store.clock.now(), settings.redeliveries_per_minute
        )
    except TrackerError as refused:
        return failure(request, who, refused.status, str(refused))
    return back(request, f"/tasks/{request.path_params['task_id']}")
