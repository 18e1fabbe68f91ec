"""Helpers for whole round trips: register, wait until delivered, verify the webhook."""

from __future__ import annotations

from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from tests.conftest import auth, wait_for
from tracker.receiver import Received, Receiver


def register(
    api: httpx.Client,
    client: dict[str, str],
    task_id: str,
    callback: str,
    expect: int = 201,
    **extra: Any,
) -> dict[str, Any]:
    response = api.post(
        "/v1/tasks",
        headers=auth(client),
        json={"task_id": task_id, "callback_url": callback, **extra},
    )
    assert response.status_code == expect, response.text
    return response.json()  # type: ignore[no-any-return]


def task_view(api: httpx.Client, client: dict[str, str], task_id: str) -> dict[str, Any]:
    return api.get(f"/v1/tasks/{task_id}", headers=auth(client)).json()  # type: ignore[no-any-return]


def settled(api: httpx.Client, client: dict[str, str], task_id: str) -> dict[str, Any]:
    """Wait until every delivery of the task has ended; return the task as the API shows it."""

    def done() -> dict[str, Any] | None:
        view = task_view(api, client, task_id)
        deliveries = [d for s in view["subscriptions"] for d in s["deliveries"]]
        if (
            view["state"] != "tracking"
            and deliveries
            and all(d["state"] != "pending" for d in deliveries)
        ):
            return view
        return None

    return wait_for(done, 20, f"task {task_id} to end and deliver")  # type: ignore[no-any-return]


def only_webhook(receiver: Receiver, path: str, secret: str) -> tuple[Received, dict[str, Any]]:
    accepted = receiver.accepted(path)
    assert len(accepted) == 1, [r.json()["type"] for r in accepted]
    hit = accepted[0]
    payload = Webhook(secret).verify(hit.body, hit.headers)
    return hit, payload
