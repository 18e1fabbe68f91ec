"""Each client's event feed: every event the tracker makes for a client, in a Redis Stream of
its own; the leases that bound the streams a client holds open; and the watcher that wakes an
API process's streams and waits when a feed grows.

Why a stream: entries get ids that only grow (the cursor), a reader pages from any id with
XRANGE and resumes after a cut with no gap and no duplicate, and trimming by length and age
keeps it bounded. Workers append in the same transaction that makes the event's deliveries
(`stage_events`), so an event is in the feed exactly when its webhooks exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from tracker.core.feed import START, FeedEvent, Filter, later
from tracker.core.records import Delivery, EventType
from tracker.store import keys, scripts
from tracker.store.bodies import read_sources

log = logging.getLogger("tracker.feed")

# Where a final event's body is built from: its task's tracking id, and when it was made.
Source = tuple[str, float]


@dataclass(frozen=True)
class FeedPolicy:
    kept: int  # entries kept per client at most (the oldest go first)
    retention: float  # seconds an entry is kept at most

    def oldest(self, now: float) -> str:
        """The id of the oldest entry kept at `now`."""
        return f"{max(0, int((now - self.retention) * 1000))}-0"


def stage_events(
    pipe: Pipeline,
    space: keys.Keyspace,
    events: Iterable[Delivery],
    seq: int,
    now: float,
    policy: FeedPolicy,
) -> None:
    """Queue, into a transaction, the appends of `events` to their clients' feeds. `seq` is
    the task's poll count when they were made, which orders one task's events."""
    for event in events:
        key = space.client_events(event.client_id)
        pipe.xadd(key, entry_fields(event, seq), maxlen=policy.kept, approximate=True)
        pipe.xtrim(key, minid=policy.oldest(now), approximate=True)
        pipe.expire(key, int(policy.retention))


def entry_fields(event: Delivery, seq: int) -> dict[str, str | bytes]:
    """The fields of one event's feed entry."""
    # A final event's body is built again from its task when read, as its delivery's is.
    body: dict[str, str | bytes] = (
        {"src": event.source, "at": repr(event.made_at)} if event.source else {"body": event.body}
    )
    return {
        "id": event.id, "type": event.event_type.value, "task": event.task_id,
        "sub": event.subscription_id, "seq": str(seq), **body,
    }  # fmt: skip


def _entry(raw_id: bytes, fields: dict[bytes, bytes]) -> tuple[FeedEvent, Source | None] | None:
    """The entry as an event, with where a final event's body is built from (its task's
    tracking id and the event's time; its body is then left empty until built)."""
    try:
        source = None if b"body" in fields else (fields[b"src"].decode(), float(fields[b"at"]))
        event = FeedEvent(
            cursor=raw_id.decode(),
            id=fields[b"id"].decode(),
            type=EventType(fields[b"type"].decode()),
            task_id=fields[b"task"].decode(),
            subscription_id=fields[b"sub"].decode(),
            seq=int(fields[b"seq"]),
            body=fields.get(b"body", b""),
        )
    except (KeyError, ValueError):  # not an entry this code wrote: it never fails a reader
        return None
    return event, source


class Feed:
    """Reading the feeds, and the leases on a client's open streams."""

    def __init__(self, redis: Redis, space: keys.Keyspace) -> None:
        self.redis = redis
        self.keys = space
        self._open = redis.register_script(scripts.OPEN_STREAM)

    async def page(
        self, client_id: str, after: str, limit: int, wanted: Filter, scan: int
    ) -> tuple[list[FeedEvent], str, bool]:
        """The first `limit` entries after cursor `after` that `wanted` admits, oldest first,
        looking at `scan` entries at most; the cursor to go on from, and whether more may
        follow (filters make a page look further than it returns)."""
        key = self.keys.client_events(client_id)
        picked: list[tuple[FeedEvent, Source | None]] = []
        cursor, looked = after, 0
        while looked < scan:
            chunk = min(scan - looked, max(limit, 100))
            found = await self.redis.xrange(key, min=f"({cursor}", max="+", count=chunk)
            for raw_id, fields in found:
                looked += 1
                cursor = raw_id.decode()
                entry = _entry(raw_id, fields)
                if entry is not None and wanted.admits(entry[0]):
                    picked.append(entry)
                    if len(picked) == limit:
                        return await self._built(picked), cursor, True
            if len(found) < chunk:
                return await self._built(picked), cursor, False
        return await self._built(picked), cursor, True

    async def _built(self, picked: list[tuple[FeedEvent, Source | None]]) -> list[FeedEvent]:
        """The events with their bodies: final events' built again from their tasks and
        subscriptions, all in one round trip. One whose task is gone (it outlives its feed
        entries, so only a lost record does this) is left out."""
        wanted = [(event, source) for event, source in picked if source is not None]
        if not wanted:
            return [event for event, _ in picked]
        sources = await read_sources(
            self.redis,
            self.keys,
            (event.subscription_id for event, _ in wanted),
            (source[0] for _, source in wanted),
        )
        events = []
        for event, source in picked:
            if source is not None:
                tid, made_at = source
                body = sources.body(event.type, made_at, event.subscription_id, tid)
                if body is None:
                    log.warning("a feed event's task is gone", extra={"event_id": event.id})
                    continue
                event = dataclasses.replace(event, body=body)
            events.append(event)
        return events

    async def last_cursor(self, client_id: str) -> str:
        """The cursor of the client's latest entry (the start, if it has none)."""
        found = await self.redis.xrevrange(self.keys.client_events(client_id), count=1)
        return found[0][0].decode() if found else START

    async def open_stream(
        self, client_id: str, token: str, now: float, until: float, limit: int
    ) -> bool:
        """Hold one of the client's `limit` stream leases until `until` (renewing `token`'s);
        False if all are held. A lease its process stops renewing (it died) runs out."""
        held = await self._open(
            keys=[self.keys.client_streams(client_id)], args=[token, repr(now), repr(until), limit]
        )
        return bool(held)

    async def close_stream(self, client_id: str, token: str) -> None:
        await self.redis.zrem(self.keys.client_streams(client_id), token)


class FeedWatcher:
    """One blocking XREAD per API process, on the feed of every client some stream or wait
    of this process follows: it wakes them when their feed grows. Readers then read the feed
    themselves, from their own cursors; the watcher reads no more than the newest ids.

    Each blocking read takes one pooled connection for at most `block` seconds (less than
    the API's socket time-out); a stream or wait that starts following a feed while a read is
    under way is woken by the next one, so its first event can be up to `block` late.
    """

    def __init__(self, redis: Redis, space: keys.Keyspace, block: float = 1.0) -> None:
        self.redis = redis
        self.keys = space
        self.block_ms = int(block * 1000)
        self._last: dict[str, str] = {}  # feed key -> the newest id seen
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.asynccontextmanager
    async def watching(self, client_id: str, cursor: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever the client's feed grows past what the watcher saw, from
        `cursor` on, while the block lasts. The watcher follows a feed from the earliest
        cursor of its readers, so no reader's cursor holds back another's wake-ups."""
        key = self.keys.client_events(client_id)
        woken = asyncio.Event()
        if key not in self._waiting:
            self._waiting[key] = set()
            self._last[key] = cursor
            self._changed.set()
        elif later(self._last[key], cursor):
            self._last[key] = cursor
            self._changed.set()
        self._waiting[key].add(woken)
        try:
            yield woken
        finally:
            self._waiting[key].discard(woken)
            if not self._waiting[key]:
                del self._waiting[key], self._last[key]

    async def _run(self) -> None:
        while True:
            if not self._last:
                self._changed.clear()
                await self._changed.wait()
                continue
            streams = dict(self._last)
            try:
                found = await self.redis.xread(streams, count=1, block=self.block_ms)
                if found:
                    # Jump to each grown feed's newest id: one wake per burst, not per entry.
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for raw_key, _ in found:
                            pipe.xrevrange(raw_key, count=1)
                        newest = await pipe.execute()
            except RedisError:
                log.warning("watching the event feeds failed; trying again", exc_info=True)
                await asyncio.sleep(1.0)
                self._wake_all()  # readers look for themselves meanwhile
                continue
            for (raw_key, _), top in zip(found or [], newest if found else [], strict=True):
                key = raw_key.decode()
                if key in self._last and top:
                    self._last[key] = top[0][0].decode()
                for woken in self._waiting.get(key, ()):
                    woken.set()

    def _wake_all(self) -> None:
        for waiting in self._waiting.values():
            for woken in waiting:
                woken.set()
