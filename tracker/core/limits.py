"""How much one client may ask of the tracker: the caps that keep one tenant's registrations
from slowing or crowding out another's. Pure; the store applies them in its transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tracker.core.records import Subscription
from tracker.settings import Settings


@dataclass(frozen=True)
class Limits:
    per_task_per_client: int = 10  # subscriptions one client may hold on one task
    per_task: int = 100  # subscriptions on one task, all clients together
    live_tasks_per_client: int = 10_000  # tracked tasks one client may have subscriptions to

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            per_task_per_client=settings.subscriptions_per_task_per_client,
            per_task=settings.subscriptions_per_task,
            live_tasks_per_client=settings.live_tasks_per_client,
        )


def registration_refused(
    limits: Limits,
    client_id: str,
    on_task: Sequence[Subscription],
    live_tasks: int,
    task_is_live_for_client: bool,
    task_will_be_live: bool,
) -> str | None:
    """Why a new subscription would pass a limit, or None when it may be made.

    `on_task` is every subscription record on the task (any state: cancelled ones stay on the
    record, so they count, or a client could churn the record without bound); `live_tasks`
    is how many tracked tasks the client has subscriptions to.
    """
    mine = sum(1 for s in on_task if s.client_id == client_id)
    if mine >= limits.per_task_per_client:
        return f"a client may hold at most {limits.per_task_per_client} subscriptions to one task"
    if len(on_task) >= limits.per_task:
        return f"a task may have at most {limits.per_task} subscriptions"
    grows = task_will_be_live and not task_is_live_for_client
    if grows and live_tasks >= limits.live_tasks_per_client:
        return live_tasks_refused(limits)
    return None


def live_tasks_refused(limits: Limits) -> str:
    """Why a subscription to one more live task is refused to a client at its limit."""
    return f"a client may track at most {limits.live_tasks_per_client} tasks at once"
