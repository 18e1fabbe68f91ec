"""Operational events, the pure part: which happening each names, its id and its body.

Two happenings concern a client's deliveries rather than a task: a delivery whose schedule ran
out (`delivery.exhausted`) and a destination disabled after failing without a break
(`destination.disabled`). The script that records either also notes it in an outbox (a sorted
set, `keys.OPERATIONS`) in the same step; whoever announces it next (the worker at once, or
the sweeper for what a crash left) turns the note into the event, once: the feed entry, and a
delivery to the client's operational subscription if it asks for that type
(`tracker.store.operations`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from tracker.core import jsontext
from tracker.core.events import iso_time
from tracker.core.records import Attempt, Delivery, EventType

EXHAUSTED = "exhausted"
DISABLED = "disabled"


@dataclass(frozen=True)
class Note:
    """One happening waiting to be announced, as its outbox member names it."""

    kind: str  # EXHAUSTED or DISABLED
    client_id: str
    subject: str  # the delivery id (exhausted), or the origin (disabled)
    discriminator: str  # the delivery's round, or when the destination was disabled

    @property
    def member(self) -> str:
        return " ".join((self.kind, self.client_id, self.subject, self.discriminator))

    @property
    def event_type(self) -> EventType:
        return (
            EventType.DELIVERY_EXHAUSTED
            if self.kind == EXHAUSTED
            else EventType.DESTINATION_DISABLED
        )

    @property
    def event_id(self) -> str:
        """Its `webhook-id`, derived from what happened: announcing it twice (a worker paused
        past a repair) gives the same id, which receivers dedupe on."""
        digest = hashlib.sha256(self.member.encode()).hexdigest()
        return "msg_op" + digest[:24]


def exhausted_note(client_id: str, delivery_id: str, round_: int) -> Note:
    return Note(EXHAUSTED, client_id, delivery_id, str(round_))


def disabled_note(client_id: str, origin: str, disabled_at: str) -> Note:
    return Note(DISABLED, client_id, origin, disabled_at)


def parse(member: str) -> Note | None:
    """The note an outbox member names; None for one this code did not write."""
    parts = member.split(" ")
    if len(parts) != 4 or parts[0] not in {EXHAUSTED, DISABLED}:
        return None
    return Note(*parts)


def exhausted_body(delivery: Delivery, last: Attempt | None, callback_url: str, at: float) -> bytes:
    """The `delivery.exhausted` event: which delivery ran out of attempts, to where, and
    how its last attempt ended."""
    return _body(
        EventType.DELIVERY_EXHAUSTED,
        at,
        {
            "delivery_id": delivery.id,
            "task_id": delivery.task_id,
            "subscription_id": delivery.subscription_id,
            "event_type": str(delivery.event_type),
            "callback_url": callback_url,
            "attempts": delivery.attempts,
            "last_attempt": None
            if last is None
            else {
                "at": iso_time(last.at),
                "status_code": last.status_code,
                "error": last.error,
            },
        },
    )


def disabled_body(origin: str, figures: dict[str, str], at: float) -> bytes:
    """The `destination.disabled` event: the origin, since when it failed, and how."""

    def time_of(name: str) -> str | None:
        return iso_time(float(figures[name])) if name in figures else None

    return _body(
        EventType.DESTINATION_DISABLED,
        at,
        {
            "origin": origin,
            "disabled_at": time_of("disabled_at"),
            "failing_since": time_of("failing_since"),
            "last_error": figures.get("last_error"),
            "last_error_at": time_of("last_error_at"),
            "last_success_at": time_of("last_ok_at"),
        },
    )


def _body(event_type: EventType, at: float, data: dict[str, Any]) -> bytes:
    return jsontext.dumps({"type": str(event_type), "timestamp": iso_time(at), "data": data})
