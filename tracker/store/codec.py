"""How records are kept in Redis hashes: every encoding and decoding, in one place."""

from __future__ import annotations

import dataclasses
import json
import zlib
from typing import Any

from tracker.core import events, jsontext
from tracker.core.origins import origin_key
from tracker.core.records import (
    Attempt,
    Delivery,
    DeliveryState,
    EventType,
    Result,
    Subscription,
    SubscriptionState,
    Task,
    TaskState,
)


def text(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


def task_fields(task: Task) -> dict[str, str]:
    """The hash of a newly tracked task (a poll's fields are added as it goes)."""
    return {
        "task_id": task.task_id,
        "state": task.state.value,
        "created_at": repr(task.created_at),
        "updated_at": repr(task.updated_at),
        "deadline_at": repr(task.deadline_at),
        "next_poll_at": repr(task.next_poll_at),
        "polls": str(task.polls),
        "rejections": str(task.rejections),
        "subs": " ".join(task.subscription_ids),
        "upstream_key": task.upstream_key,
        "key_holder": task.key_holder,
        "owner": task.owner,
    }


def hash_items(fields: dict[str, str]) -> list[str]:
    """A hash's fields as HSET takes them in a script's ARGV: field, value, field, value, …"""
    return [item for pair in fields.items() for item in pair]


def task(raw: dict[str, str], answer: bytes | None = None) -> Task | None:
    """A task from its hash; with `answer` (an ended task's, from its own key), the whole
    final answer stands in for the hash's summary of it."""
    if not raw:
        return None
    return Task(
        task_id=raw["task_id"],
        state=TaskState(raw["state"]),
        created_at=float(raw["created_at"]),
        updated_at=float(raw["updated_at"]),
        deadline_at=float(raw["deadline_at"]),
        next_poll_at=float(raw["next_poll_at"]),
        polls=int(raw.get("polls", "0")),
        rejections=int(raw.get("rejections", "0")),
        upstream_status=raw.get("upstream_status"),
        upstream=upstream_answer(answer, raw.get("snapshot")),
        result=result(json.loads(raw["result"])) if "result" in raw else None,
        origin=float(raw["origin"]) if "origin" in raw else None,
        history=tuple((s, float(t)) for s, t in json.loads(raw.get("history", "[]"))),
        subscription_ids=tuple(raw.get("subs", "").split()),
        upstream_key=raw.get("upstream_key", ""),
        key_holder=raw.get("key_holder", ""),
        owner=raw.get("owner", ""),
    )


def answer_bytes(final: dict[str, Any]) -> bytes:
    """An ended task's final answer as kept: compact JSON, compressed (the doc's example
    shrinks from 1.5 KB to 0.76 KB; it is read once an attempt or a view)."""
    return zlib.compress(jsontext.dumps(final))


def upstream_answer(answer: bytes | None, snapshot: str | bytes | None) -> Any:
    """A task's upstream answer: the whole final one from its own key (`answer`) once it
    ended, else the hash's `snapshot` (a summary while live; the whole answer in a task that
    ended before answers had a key of their own), else None."""
    if answer is not None:
        return json.loads(zlib.decompress(answer))
    return json.loads(snapshot) if snapshot is not None else None


def result_json(value: Result) -> str:
    return jsontext.dumps({**dataclasses.asdict(value), "state": value.state.value}).decode()


def result(fields: dict[str, Any]) -> Result:
    dropped = tuple(fields.get("dropped_urls", ()))
    return Result(**{**fields, "state": TaskState(fields["state"]), "dropped_urls": dropped})


def subscription_fields(sub: Subscription) -> dict[str, str]:
    return {
        "task_id": sub.task_id,
        "client_id": sub.client_id,
        "callback_url": sub.callback_url,
        "metadata": jsontext.dumps(sub.metadata).decode(),
        "events": json.dumps([e.value for e in sub.events]),
        "state": sub.state.value,
        "created_at": repr(sub.created_at),
        **({"keep": "1"} if sub.keep_videos else {}),
        **(
            {"header_names": json.dumps(sub.header_names), "headers": sub.sealed_headers}
            if sub.sealed_headers
            else {}
        ),
    }


def subscription(subscription_id: str, raw: dict[str, str]) -> Subscription:
    return Subscription(
        id=subscription_id,
        task_id=raw["task_id"],
        client_id=raw["client_id"],
        callback_url=raw["callback_url"],
        metadata=json.loads(raw["metadata"]),
        events=tuple(EventType(e) for e in json.loads(raw["events"])),
        state=SubscriptionState(raw["state"]),
        created_at=float(raw["created_at"]),
        keep_videos=raw.get("keep") == "1",
        header_names=tuple(json.loads(raw.get("header_names", "[]"))),
        sealed_headers=raw.get("headers", ""),
    )


def delivery_fields(d: Delivery) -> dict[str, str | bytes]:
    # A final event's body can be built again from its task (`tracker.core.events.final_body`):
    # while it is pending, it is kept in a key of its own (`keys.delivery_body`).
    body: dict[str, str | bytes] = (
        {"source": d.source, "made_at": repr(d.made_at)} if d.source else {"body": d.body}
    )
    return {
        "subscription_id": d.subscription_id,
        "task_id": d.task_id,
        "event_type": d.event_type.value,
        **body,
        "state": d.state.value,
        "attempts": str(d.attempts),
        "next_attempt_at": repr(d.next_attempt_at),
        "created_at": repr(d.created_at),
        # For the claim script: the slots and breaker it goes through, and whose share it is.
        "origin_key": origin_key(d.client_id, d.origin),
        "client_id": d.client_id,
    }


def maybe_delivery(delivery_id: str, raw: dict[bytes, bytes]) -> Delivery | None:
    """A delivery from its hash; None for no hash, or one that is not a whole delivery (what
    a lost record leaves: it is then an orphan, and never holds up the deliveries read with
    it)."""
    try:
        return delivery(delivery_id, raw) if raw else None
    except (KeyError, ValueError):
        return None


def delivery(delivery_id: str, raw: dict[bytes, bytes]) -> Delivery:
    """A delivery from its hash; the body stays bytes (the exact bytes that are signed). A final
    event's hash has none (its `source` task builds it again): it is empty unless the caller
    put the body kept for its attempts in `raw` (`bodies.read_outgoing`)."""
    found = {k.decode(): v for k, v in raw.items()}
    source = found.get("source", b"").decode()
    return Delivery(
        id=delivery_id,
        subscription_id=found["subscription_id"].decode(),
        task_id=found["task_id"].decode(),
        event_type=EventType(found["event_type"].decode()),
        body=found["body"] if not source else found.get("body", b""),
        source=source,
        made_at=float(found.get("made_at", b"0")),
        state=DeliveryState(found["state"].decode()),
        attempts=int(found["attempts"]),
        next_attempt_at=float(found["next_attempt_at"]),
        created_at=float(found["created_at"]),
        round=int(found.get("round", b"0")),
        client_id=found.get("client_id", b"").decode(),
    )


def final_body(
    event_type: EventType,
    made_at: float,
    sub: Subscription,
    outcome: bytes | None,
    answer: bytes | None,
    snapshot: bytes | None,
) -> bytes | None:
    """The body of a final event made at `made_at` for `sub`, built again from its task's
    stored result (`outcome`) and final answer (its own key's `answer`, or, for a task that
    ended before answers had a key of their own, the hash's `snapshot`); None when the task
    record is gone, and its body with it."""
    if outcome is None:
        return None
    final = upstream_answer(answer, snapshot)
    return events.final_body(event_type, made_at, result(json.loads(outcome)), final, sub)


_ATTEMPT_ALWAYS = ("at", "status_code", "error", "latency_ms")


def attempt_json(value: Attempt) -> str:
    # What an attempt did not record (no answer, answers not recorded, round 0) is left out:
    # most attempts are a 2xx with little to say, and they are many.
    found = {k: v for k, v in vars(value).items() if k in _ATTEMPT_ALWAYS or v not in (None, 0, "")}
    return jsontext.dumps(found).decode()


def attempt(raw: bytes) -> Attempt:
    return Attempt(**json.loads(raw))
