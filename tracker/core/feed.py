"""A client's event feed, the pure part: an entry, its cursor, and which entries a reader's
filters let through (`tracker.store.feed` keeps the feed in Redis)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tracker.core.records import EventType

# A Redis Stream entry id: milliseconds and a sequence number. The cursor is that id.
CURSOR_PATTERN = re.compile(r"[0-9]{1,19}-[0-9]{1,19}")
START = "0-0"  # before every entry


@dataclass(frozen=True)
class FeedEvent:
    cursor: str  # its place in the client's feed: later entries have greater cursors
    id: str  # the `webhook-id` its webhooks carry
    type: EventType
    task_id: str
    subscription_id: str
    seq: int  # the task's poll count when it was made: orders one task's events
    body: bytes  # the exact webhook body

    @property
    def at(self) -> float:
        """When it was appended (the cursor's milliseconds, on the fleet's clock)."""
        return int(self.cursor.partition("-")[0]) / 1000


@dataclass(frozen=True)
class Filter:
    """What a reader asked for: only these types (empty: all), only this task (None: all)."""

    types: frozenset[EventType] = frozenset()
    task_id: str | None = None

    def admits(self, event: FeedEvent) -> bool:
        return (not self.types or event.type in self.types) and (
            self.task_id is None or event.task_id == self.task_id
        )


def valid_cursor(raw: str) -> bool:
    """Whether `raw` is a cursor this feed could have given."""
    if not CURSOR_PATTERN.fullmatch(raw):
        return False
    ms, seq = (int(part) for part in raw.split("-"))
    return ms < 2**64 and seq < 2**64


def later(a: str, b: str) -> bool:
    """Whether cursor `a` comes after cursor `b`."""
    return tuple(map(int, a.split("-"))) > tuple(map(int, b.split("-")))


def clamped(cursor: str, last: str) -> str:
    """A reader's cursor no later than the feed's `last` entry: a cursor from the future
    (forged, or kept from a Redis that lost its data) would wait for entries that may never
    come, while a clamped one reads what comes next."""
    return last if later(cursor, last) else cursor
