"""The fault suite's helpers: many registrations, and an audit of where each task ended.

Every audit also checks the invariants the README promises whatever fails (`violations`):
attempt counts only grow and states only move forward (across the audits of one wait), each
attempt log is in order and as long as its count, an ended task or delivery has no entry left
in its due set, and the receiver never had two POSTs of one webhook-id in flight at once.
`settled` fails the test on any of them.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support import auth, client_records, wait_for
from tracker.devtools.receiver import Receiver
from tracker.devtools.simulator import Simulator
from tracker.store import codec

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
    client_id: str = ""  # whose it is (`register_all`), to find its records' partition


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
        done.append(
            dataclasses.replace(item, subscription_id=response.json()["id"], client_id=client["id"])
        )
    return done


SETTLED = {"delivered", "failed", "timed_out", "dead"}


@dataclass
class Audit:
    """Where every registered task ended, from Redis and from what the receiver got."""

    outcome: dict[str, str]  # task id -> delivered | failed | timed_out | dead | <unfinished>
    mismatched: list[str]  # tasks that ended otherwise than scripted
    duplicate_event_ids: list[str]  # subscriptions that got a final event under two ids
    repeats: int  # final events received more than once under the same id (allowed)
    violations: list[str]  # broken invariants (see the module's docstring)

    @property
    def table(self) -> Counter[str]:
        return Counter(self.outcome.values())

    def unsettled(self) -> dict[str, str]:
        return {task: o for task, o in self.outcome.items() if o not in SETTLED}

    def settled(self) -> bool:
        return not self.unsettled()

    def report(self) -> str:
        table = self.table
        lines = [f"{'registered':>12} {len(self.outcome)}"]
        lines += [
            f"{name:>12} {table.get(name, 0)}"
            for name in ("delivered", "failed", "timed_out", "dead")
        ]
        others = {k: v for k, v in table.items() if k not in SETTLED}
        lines += [f"{name:>12} {count}" for name, count in others.items()]
        lines.append(f"{'repeats':>12} {self.repeats} (same webhook-id)")
        return "\n".join(lines)


# Where a delivery may go from each state (back to pending only through a redeliver, which
# the fault tests do not make).
FORWARD = {
    "pending": {"pending", "delivered", "dead", "gone", "skipped"},
    "delivered": {"delivered"}, "dead": {"dead"}, "gone": {"gone"}, "skipped": {"skipped"},
}  # fmt: skip


def audit(
    redis_url: str,
    receiver: Receiver,
    tracked: list[Tracked],
    seen: dict[str, tuple[str, int]] | None = None,
) -> Audit:
    """Where every tracked task ended. `seen` (delivery id -> state and attempts at the last
    audit) is updated, so that audits made one after another can tell a state going back."""
    seen = {} if seen is None else seen
    violations = [f"two POSTs of {i} in flight at once" for i in receiver.overlaps()]
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
    tasks: list[list[Any]] = []
    records: dict[str, list[Any]] = {}
    clients = list(dict.fromkeys(item.client_id for item in tracked))
    for client_id in clients:  # tests track the tasks of one client, or of a few
        mine = [item for item in tracked if item.client_id == client_id]
        found_tasks, found_records = _read(redis_url, client_id, mine)
        tasks += found_tasks
        records.update(found_records)
    tracked = [item for client_id in clients for item in tracked if item.client_id == client_id]
    for item, (raw_state, listed, task_due) in zip(tracked, tasks, strict=True):
        state = (raw_state or b"missing").decode()
        delivery_states = []
        for raw_id in listed:
            state_now, problems = _check_delivery(raw_id.decode(), records[raw_id.decode()], seen)
            delivery_states.append(state_now)
            violations += problems
        if state != "tracking" and task_due is not None:
            violations.append(f"{item.task_id} is {state} but still due for a poll")
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
    return Audit(outcome, mismatched, duplicates, repeats, violations)


def _check_delivery(
    delivery_id: str, record: list[Any], seen: dict[str, tuple[str, int]]
) -> tuple[str, list[str]]:
    """A delivery's state, and the invariants it breaks: `record` is its (state, attempts,
    round), its attempt log and its due entry, read together."""
    (raw_state, raw_attempts, raw_round), log, due = record
    if raw_state is None:
        return "missing", []
    state, attempts = raw_state.decode(), int(raw_attempts or 0)
    problems = []
    before = seen.get(delivery_id)
    if before is not None and state not in FORWARD[before[0]]:
        problems.append(f"{delivery_id} went from {before[0]} back to {state}")
    if before is not None and attempts < before[1]:
        problems.append(f"{delivery_id}'s attempts went from {before[1]} down to {attempts}")
    seen[delivery_id] = (state, attempts)
    # The log keeps earlier redeliver rounds: this round's attempts are as many as its count.
    logged = [codec.attempt(entry) for entry in log]
    times = [a.at for a in logged]
    this_round = [a for a in logged if a.round == int(raw_round or 0)]
    if len(this_round) != attempts or times != sorted(times):
        problems.append(f"{delivery_id}'s log ({len(times)} attempts) is out of order or count")
    if state != "pending" and due is not None:
        problems.append(f"{delivery_id} is {state} but still due")
    return state, problems


def _read(
    redis_url: str, client_id: str, tracked: list[Tracked]
) -> tuple[list[list[Any]], dict[str, list[Any]]]:
    """Each task's state, deliveries and due time, and each delivery's record, of one client."""
    with client_records(redis_url, client_id) as (conn, space):
        # Two pipelines for the whole audit: it runs again and again while a test waits, in the
        # process that also serves the test's receiver, and must not starve it.
        pipe = conn.pipeline(transaction=False)
        for item in tracked:
            pipe.hget(space.task(item.task_id), "state")
            pipe.lrange(space.subscription_deliveries(item.subscription_id), 0, -1)
            pipe.zscore(space.DUE_TASKS, item.task_id)
        found = pipe.execute()
        tasks = [found[i : i + 3] for i in range(0, len(found), 3)]
        ids = [raw.decode() for _, listed, _ in tasks for raw in listed]
        pipe = conn.pipeline(transaction=True)  # one snapshot of every delivery
        for delivery_id in ids:
            pipe.hmget(space.delivery(delivery_id), "state", "attempts", "round")
            pipe.lrange(space.delivery_attempts(delivery_id), 0, -1)
            pipe.zscore(space.DUE_DELIVERIES, delivery_id)
        found = pipe.execute() if ids else []
    return tasks, {delivery_id: found[3 * n : 3 * n + 3] for n, delivery_id in enumerate(ids)}


def settled(
    redis_url: str, receiver: Receiver, tracked: list[Tracked], timeout: float, what: str
) -> Audit:
    """Wait until every tracked task has ended up somewhere final; the audit that showed it.
    Fails if any audit on the way broke an invariant."""
    seen: dict[str, tuple[str, int]] = {}
    broken: list[str] = []

    last: list[Audit] = []

    def check() -> Audit | None:
        found = audit(redis_url, receiver, tracked, seen)
        broken.extend(v for v in found.violations if v not in broken)
        last[:] = [found]
        return found if found.settled() else None

    try:
        result: Audit = wait_for(check, timeout, what, interval=0.25)
    except AssertionError as timed_out:
        # Say which tasks were left and where, so a failure on a machine we cannot reach
        # (CI) can be read from its log alone.
        unsettled = last[0].unsettled()
        shown = sorted(unsettled.items())[:20]
        raise AssertionError(
            f"{timed_out}: {len(unsettled)} unsettled, e.g. {shown}\n{last[0].report()}"
        ) from None
    assert broken == [], broken[:20]
    return result


def across(
    disruption: Callable[[], None],
    api: httpx.Client,
    client: dict[str, str],
    simulator: Simulator,
    receiver: Receiver,
    redis_url: str,
) -> None:
    """Ten tasks registered before `disruption` (a failover, a slot moved) and ten after, once
    the API answers again (503 meanwhile; a client sends again): every one delivered once,
    under one event id."""
    path = f"/hooks/{uuid.uuid4().hex}"

    def tasks(n: int) -> list[Tracked]:
        return [Tracked(simulator.script(duration=0.5).task_id, "", path, "completed")
                for _ in range(n)]  # fmt: skip

    before = register_all(api, client, receiver, tasks(10))
    wait_for(lambda: receiver.accepted(path), 20, "the first webhooks")
    disruption()

    def registered_after() -> list[Tracked] | None:
        try:
            return register_all(api, client, receiver, tasks(10))
        except AssertionError:
            return None

    after = wait_for(registered_after, 30, "registrations after the disruption")
    result = settled(redis_url, receiver, before + after, 60, "every task to settle")
    assert result.table == {"delivered": 20}
    assert result.duplicate_event_ids == []
