"""The operator's view of the dashboard: the fleet's figures, every client with its activity
and storage, the open circuits, any client's task, and revoking or rotating a client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tracker import metrics
from tracker.settings import Settings
from tracker.store import Store
from tracker.store.gauges import RedisGauges
from tracker.ui import charts
from tracker.ui.pages import back, failure, for_operator, posted, render, task_of
from tracker.ui.session import Viewer


async def operator_view(request: Request, who: Viewer) -> Response:
    """The operator's page, with a rotated secret shown once if one was left for it."""
    settings: Settings = request.app.state.settings
    store: Store = request.app.state.store
    now = store.clock.now()
    gauges = await asyncio.to_thread(fleet_gauges, str(settings.redis_url), settings.partitions)
    totals = await store.storage_totals()
    figures = [
        ("tasks tracking", f"{gauges.get('qrtracker_tasks_tracking', 0):,.0f}"),
        ("overdue by", f"{gauges.get('qrtracker_oldest_overdue_seconds', 0):,.1f} s"),
        ("deliveries pending", f"{gauges.get('qrtracker_deliveries_pending', 0):,.0f}"),
        ("deliveries due now", f"{gauges.get('qrtracker_queue_depth', 0):,.0f}"),
        ("circuits open", f"{gauges.get('qrtracker_origins_open', 0):,.0f}"),
        ("dead deliveries (this process)", f"{_total(metrics.DEAD_DELIVERIES):,.0f}"),
        ("upstream error rate (this process)", _error_rate()),
        ("videos stored", f"{totals.get('objects', 0):,}"),
        ("bytes stored", _bytes(totals.get("bytes", 0))),
    ]
    destinations = await store.opened_origins(now)
    notice = await store.sessions.take_notice(who.session)
    clients = await store.clients.all()
    owners = [k.removeprefix("objects:") for k in totals if k.startswith("objects:")]
    stored = {c: (totals[f"objects:{c}"], _bytes(totals.get(f"bytes:{c}", 0))) for c in owners}
    return render(
        request, "operator.html", who, figures=figures, clients=clients,
        names={c.id: c.name for c in clients},
        stored=stored, activity=await store.activity([c.id for c in clients]),
        destinations=destinations, lag=charts.histogram(_lag_buckets(), "Notification lag"),
        secret=json.loads(store.clients.vault.open(notice)) if notice else None,
    )  # fmt: skip


operator_page = for_operator(operator_view)


@for_operator
async def operator_task(request: Request, who: Viewer) -> Response:
    """`/operator/task?client_id=…&task_id=…`: any client's task, for the operator."""
    store: Store = request.app.state.store
    client_id = request.query_params.get("client_id", "")
    task_id = request.query_params.get("task_id", "").strip()
    found = await store.clients.get(client_id) if client_id else None
    if found is None or not task_id:
        return failure(request, who, 404, "No such client, or no task id given.")
    return await task_of(request, who, found.id, task_id, looking=found.name)


ACTIONS = {
    "revoke": (
        "Revoke",
        "Its API key is refused from now on, its webhook secrets and QuickRouter keys are "
        "deleted, and its subscriptions are cancelled: nothing more is polled or sent for it. "
        "This cannot be undone.",
    ),
    "rotate": (
        "Rotate the secret of",
        "A new webhook secret is made and shown once; the old one also signs for the overlap.",
    ),
}


@for_operator
async def client_action(request: Request, who: Viewer) -> Response:
    """Revoke or rotate, each asked for again on a page of its own (POST with `confirm`),
    then done and answered with a redirect, so a reload repeats nothing."""
    form = await posted(request)
    if form is None:
        return failure(request, who, 403, "The form was stale; reload the page.")
    settings: Settings = request.app.state.settings
    store: Store = request.app.state.store
    client_id, action = request.path_params["client_id"], request.path_params["action"]
    if action not in ACTIONS:
        return failure(request, who, 404, "No such action.")
    found = await store.clients.get(client_id)
    if found is None or found.revoked:
        return failure(request, who, 404, "No such client.")
    if form.get("confirm") != "yes":
        verb, consequence = ACTIONS[action]
        return render(
            request, "confirm.html", who, client=found, action=action, verb=verb,
            consequence=consequence,
        )  # fmt: skip
    if action == "revoke":
        await store.shard(client_id).revoke_client(client_id, store.clock.now())
        return back(request, "/operator")
    rotated = await store.clients.rotate_secret(
        client_id, store.clock.now(), settings.secret_rotation_overlap
    )
    if rotated is None:
        return failure(request, who, 404, "No such client.")
    notice = json.dumps({"name": rotated.name, "value": rotated.secret})
    # Sealed like the secret it carries: no credential is kept in Redis in clear.
    await store.sessions.leave_notice(who.session, store.clients.vault.seal(notice))
    return back(request, "/operator")


def fleet_gauges(redis_url: str, partitions: int) -> dict[str, float]:
    """The fleet's gauges (`tracker.store.gauges`), by name."""
    return {
        family.name: family.samples[0].value
        for family in RedisGauges(redis_url, partitions).collect()
        if family.samples
    }


def _bytes(count: int) -> str:
    """A byte count as people read it (1,536 -> 1.5 KiB)."""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _total(counter: Any) -> float:
    return float(
        sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total"))
    )


def _error_rate() -> str:
    codes = {
        s.labels["code"]: s.value
        for m in metrics.UPSTREAM_RESPONSES.collect()
        for s in m.samples
        if s.name.endswith("_total")
    }
    total = sum(codes.values())
    errors = sum(v for code, v in codes.items() if not code.startswith("2"))
    return f"{errors / total:.1%}" if total else "no polls yet"


def _lag_buckets() -> list[tuple[str, float]]:
    """The notification lag's histogram, as counts per bucket (not cumulative)."""
    cumulative = [
        (s.labels["le"], s.value)
        for m in metrics.NOTIFICATION_LAG.collect()
        for s in m.samples
        if s.name.endswith("_bucket")
    ]
    counts, before = [], 0.0
    for le, value in cumulative:
        label = "more" if le == "+Inf" else f"≤{float(le):g} s"
        counts.append((label, value - before))
        before = value
    return counts
