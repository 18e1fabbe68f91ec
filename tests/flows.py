"""Whole round trips: register through the API, wait until delivered, verify the webhook."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from tests.conftest import auth, wait_for
from tracker.receiver import Received, Receiver
from tracker.simulator import SimTask, Simulator


@dataclass
class Trip:
    """One client's view of the tracker, with the simulator upstream and a receiver path."""

    api: httpx.Client
    client: dict[str, str]
    simulator: Simulator
    receiver: Receiver
    path: str  # this test's own receiver path

    def script(self, **script: Any) -> SimTask:
        return self.simulator.script(**script)

    def register(
        self, task_id: str, suffix: str = "", expect: int = 201, **extra: Any
    ) -> dict[str, Any]:
        """Subscribe the receiver path (plus `suffix`) to `task_id`."""
        response = self.api.post(
            "/v1/tasks",
            headers=auth(self.client),
            json={"task_id": task_id, "callback_url": self.receiver.url + self.path + suffix,
                  **extra},
        )  # fmt: skip
        assert response.status_code == expect, response.text
        return response.json()  # type: ignore[no-any-return]

    def view(self, task_id: str) -> dict[str, Any]:
        response = self.api.get(f"/v1/tasks/{task_id}", headers=auth(self.client))
        return response.json()  # type: ignore[no-any-return]

    def settled(self, task_id: str) -> dict[str, Any]:
        """Wait until the task has ended and each of its deliveries too; the API's view."""

        def done() -> dict[str, Any] | None:
            view = self.view(task_id)
            deliveries = [d for s in view["subscriptions"] for d in s["deliveries"]]
            ended = all(d["state"] != "pending" for d in deliveries)
            return view if view["state"] != "tracking" and deliveries and ended else None

        return wait_for(done, 20, f"task {task_id} to end and deliver")  # type: ignore[no-any-return]

    def hits(self, suffix: str = "") -> list[Received]:
        return self.receiver.at(self.path + suffix)

    def only_webhook(self, suffix: str = "") -> tuple[Received, dict[str, Any]]:
        """The one accepted webhook at the path, verified with the client's secret."""
        accepted = self.receiver.accepted(self.path + suffix)
        assert len(accepted) == 1, [r.json()["type"] for r in accepted]
        hit = accepted[0]
        return hit, Webhook(self.client["webhook_secret"]).verify(hit.body, hit.headers)

    def round_trip(self, **script: Any) -> tuple[SimTask, dict[str, Any], dict[str, Any]]:
        """Script a task, register it, wait; the task, the API's view and the one event."""
        task = self.script(**script)
        self.register(task.task_id)
        view = self.settled(task.task_id)
        return task, view, self.only_webhook()[1]
