"""A client's copies of a task's videos as it is shown them (the API's task view, the
dashboard's task page): the copy's record, with links made at the time of asking.

Its own module because it joins two layers that know nothing of each other: the records
(`tracker.store`) and the stores that sign the links (`tracker.net.objects`).
"""

from __future__ import annotations

from typing import Any

from tracker.core import storage
from tracker.core.events import iso_time
from tracker.core.records import Task, TaskState
from tracker.net.objects import Stores, links_to
from tracker.store import Shard


async def copies_of(
    store: Shard, stores: Stores, client_id: str, task: Task, ttl: float
) -> dict[str, Any] | None:
    """The client's copies of `task`'s videos, with links that work `ttl` seconds from now;
    None when it has none (only a completed task has videos to copy)."""
    if task.state is not TaskState.COMPLETED:
        return None
    found = await store.copies.of_task(task.tracking_id, client_id)
    if found is None:
        return None
    own = await store.buckets.get(client_id)
    target = stores.for_client(own.url, own.access_key_id, own.secret_access_key)
    # Links only where the objects are: a client that moved to another bucket since has
    # its older copies where they were, and no credentials here to sign for them.
    if target is not None and str(target.location) != found.location:
        target = None
    links = await links_to(target, found.outputs, ttl) if target is not None else {}
    return {
        "state": str(found.state),
        "deadline_at": iso_time(found.deadline_at),
        "remove_at": iso_time(found.remove_at) if found.remove_at else None,
        "outputs": storage.event_outputs(
            list(found.outputs), target.location if target is not None else None, links
        ),
    }
