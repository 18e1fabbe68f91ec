"""The fault suite's helpers: many registrations, and an audit of where each task ended."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from tests.support import auth, wait_for
from tracker.devtools.receiver import Receiver
from tracker.store import keys
from tracker.store.connection import connect_sync

# What each scripted scenario must end as.
EXPECTED_STATE = {
    "success": "completed", "success_no_upscale": "completed", "preview_url": "completed",
    "doc_example": "completed", "fail_generation": "failed", "fail_upsampling": "failed",
    "failed": "failed", "error": "failed", "unauthorized": "failed", "unknown": "failed",
    "never_ends": "timed_out",
}  # fmt: skip


@dataclass(frozen=True)
class Tracked:
    task_id: str
    subscription_id: str
    path: str
    expected: str  # the task state the simulator scripted


def register_all(
    api: httpx.Client, client: dict[str, str], receiver: Receiver, tracked: Iterable[Tracked]
) -> list[Tracked]:
    done = []
    for item in tracked:
        response = api.post(
            "/v1/tasks", headers=auth(client),
            json={"task_id": item.task_id, "callback_url": receiver.url + item.path},
        )  # fmt: skip
        assert response.status_code == 201, response.text
        done.append(dataclasses.replace(item, subscription_id=response.json()["id"]))
    return done


@dataclass
class Audit:
    """Where every registered task ended, from Redis and from what the receiver got."""

    outcome: dict[str, str]  # task id -> delivered | failed | timed_out | dead | <unfinished>
    mismatched: list[str]  # tasks that ended otherwise than scripted
    duplicate_event_ids: list[str]  # subscriptions that got a final event under two ids
    repeats: int  # final events received more than once under the same id (allowed)

    @property
    def table(self) -> Counter[str]:
        return Counter(self.outcome.values())

    def settled(self) -> bool:
        return all(v in {"delivered", "failed", "timed_out", "dead"} for v in self.outcome.values())

    def report(self) -> str:
        table = self.table
        lines = [f"{'registered':>12} {len(self.outcome)}"]
        lines += [
            f"{name:>12} {table.get(name, 0)}"
            for name in ("delivered", "failed", "timed_out", "dead")
        ]
        others = {
            k: v for k, v in table.items() if k not in {"delivered", "failed", "timed_out", "dead"}
        }
        lines += [f"{name:>12} {count}" for name, count in others.items()]
        lines.append(f"{'repeats':>12} {self.repeats} (same webhook-id)")
        return "\n".join(lines)


def audit(redis_url: str, receiver: Receiver, tracked: list[Tracked]) -> Audit:
    outcome: dict[str, str] = {}
    mismatched: list[str] = []
    duplicates: list[str] = []
    repeats = 0
    final_types = {"video.completed", "video.failed", "video.timed_out"}
    event_ids: dict[str, set[str]] = {}  # subscription -> webhook-ids of its final events
    accepted: Counter[str] = Counter()  # subscription -> final events it accepted
    for hit in list(receiver.received):
        event = json.loads(hit.body)
        if event["type"] in final_types:
            sub = event["data"]["subscription_id"]
            event_ids.setdefault(sub, set()).add(hit.headers["webhook-id"])
            accepted[sub] += 200 <= hit.answered < 300
    with connect_sync(redis_url) as conn:
        for item in tracked:
            state = (conn.hget(keys.task(item.task_id), "state") or b"missing").decode()
            ids = conn.lrange(keys.subscription_deliveries(item.subscription_id), 0, -1)
            delivery_states = [
                (conn.hget(keys.delivery(i.decode()), "state") or b"missing").decode() for i in ids
            ]
            if delivery_states == ["dead"]:
                outcome[item.task_id] = "dead"
            elif delivery_states == ["delivered"] and state in {"failed", "timed_out"}:
                outcome[item.task_id] = state
            elif delivery_states == ["delivered"] and state == "completed":
                outcome[item.task_id] = "delivered"
            else:
                outcome[item.task_id] = f"{state}/{','.join(delivery_states) or 'no delivery'}"
            if state != item.expected:
                mismatched.append(f"{item.task_id}: {state}, scripted {item.expected}")
            if len(event_ids.get(item.subscription_id, ())) > 1:
                duplicates.append(item.subscription_id)
            repeats += max(0, accepted[item.subscription_id] - 1)
    return Audit(outcome, mismatched, duplicates, repeats)


def settled(
    redis_url: str, receiver: Receiver, tracked: list[Tracked], timeout: float, what: str
) -> Audit:
    """Wait until every tracked task has ended up somewhere final; the audit that showed it."""
    return wait_for(  # type: ignore[no-any-return]
        lambda: (a := audit(redis_url, receiver, tracked)).settled() and a, timeout, what
    )
