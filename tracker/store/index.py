"""Each client's index of its tasks (by first registration time): listing and searching them
for the API and the dashboard, and the sweeper's trimming of entries whose records expired."""

from __future__ import annotations

from redis.asyncio import Redis

from tracker.core import search
from tracker.core.records import Task, TaskState
from tracker.store import keys, scripts
from tracker.store.tasks import Tasks

# The most of a client's tasks one page of its list looks at (see `list_for_client`): about
# 30 ms of the API's time and Redis's, where a filter nothing matched read every task (411 ms
# at 10,000 tasks).
PAGE_SCAN = 1000


class TaskIndex:
    """A client's tasks as its index lists them, read through `tasks`."""

    def __init__(self, redis: Redis, space: keys.Keyspace, tasks: Tasks) -> None:
        self.redis = redis
        self.keys = space
        self.tasks = tasks
        self._forget_expired = redis.register_script(scripts.FORGET_EXPIRED_TASKS)
        self._search = redis.register_script(scripts.SEARCH_TASKS)

    async def forget_expired(
        self, client_id: str, after: float, cutoff: float, limit: int
    ) -> tuple[int, float | None]:
        """Drop from the client's task index up to `limit` entries registered after `after`
        and by `cutoff` whose task records expired; how many went, and the registration time
        of the last entry looked at (None: there were none), to go on from."""
        dropped, last = await self._forget_expired(
            keys=[self.keys.client_tasks(client_id)],
            args=[repr(after), repr(cutoff), limit, self.keys.task("%s")],
        )
        return int(dropped), float(last) if last else None

    async def forget_old_scopes(self, client_id: str, cutoff: float) -> None:
        """Forget the key fingerprints the client last registered with before `cutoff`: none
        of their tasks can be left (`forget_expired`)."""
        await self.redis.zremrangebyscore(self.keys.client_key_scopes(client_id), "-inf", cutoff)

    async def search_for_client(
        self, client_id: str, text: str, scan: int, limit: int, state: TaskState | None
    ) -> list[tuple[Task, float]]:
        """The client's tasks, newest first among its `scan` newest, whose id or whose
        metadata (in the client's own subscriptions) contains `text`
        (`tracker.core.search`), in two round trips: Redis passes over the tasks whose text
        cannot hold it (`scripts.SEARCH_TASKS`), the candidates are matched in full here, and
        only the hits' whole records are read."""
        candidates = await self._search(
            keys=[self.keys.client_tasks(client_id)],
            args=[
                scan, client_id, search.prefilter(text), state.value if state else "",
                self.keys.task("%s"), self.keys.subscription("%s"),
            ],
        )  # fmt: skip
        hits: list[tuple[str, float]] = []
        for member, at, task_id, *documents in candidates:
            raws = [d.decode() for d in documents]
            if search.task_matches(task_id.decode(), search.metadata_of(raws, text), text):
                hits.append((member.decode(), float(at)))
                if len(hits) == limit:
                    break
        tasks = await self.tasks.get_many([member for member, _ in hits])
        return [(task, at) for task, (_, at) in zip(tasks, hits, strict=True) if task is not None]

    async def count_for_client(self, client_id: str) -> int:
        """How many tasks the client has registered that are still kept."""
        return int(await self.redis.zcard(self.keys.client_tasks(client_id)))

    async def list_for_client(
        self,
        client_id: str,
        *,
        before: float | None,
        limit: int,
        state: TaskState | None,
        scan: int = PAGE_SCAN,
    ) -> tuple[list[tuple[Task, float]], float | None]:
        """The client's tasks, newest registration first, each with its registration time.

        `before` is the cursor: only tasks registered strictly earlier. Returns the page and
        the cursor of the next page (None at the end). Each batch is read in one round trip.
        A page looks at `scan` tasks at most, so a `state` that few tasks are in gives short
        (even empty) pages with a cursor to go on from, never one request that reads them all.
        """
        index = self.keys.client_tasks(client_id)
        found: list[tuple[Task, float]] = []
        upper: float | str = "+inf" if before is None else f"({before!r}"
        looked, last = 0, 0.0
        while looked < scan:
            batch = await self.redis.zrevrangebyscore(
                index, upper, "-inf", start=0, num=min(limit * 2, scan - looked), withscores=True
            )
            if not batch:
                return found, None
            looked, last = looked + len(batch), batch[-1][1]
            records = await self.tasks.get_many([member.decode() for member, _ in batch])
            expired = [member for (member, _), task in zip(batch, records, strict=True) if not task]
            if expired:  # expired with its retention: forget it here too
                await self.redis.zrem(index, *expired)
            for (_, score), task in zip(batch, records, strict=True):
                if task is not None and (state is None or task.state is state):
                    found.append((task, score))
                    if len(found) == limit:
                        return found, score
            upper = f"({last!r}"
        return found, last
