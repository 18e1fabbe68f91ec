"""What to do after one poll: a pure decision from the outcome and the task's poll state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tracker.core import backoff, estimates
from tracker.core.records import Result, TaskState
from tracker.core.upstream import (
    Completed,
    Failed,
    Outcome,
    Rejected,
    RejectReason,
    Running,
    TryLater,
)
from tracker.errors import TaskErrorCode
from tracker.settings import Settings


@dataclass(frozen=True)
class Wait:
    """Poll again in `delay` seconds, recording what was seen."""

    delay: float
    rejections: int
    status: str | None = None
    upstream: dict[str, Any] | None = None


@dataclass(frozen=True)
class Finish:
    result: Result
    upstream: dict[str, Any] | None = None


Step = Wait | Finish

_REJECTION_CODES = {
    RejectReason.UNAUTHORIZED: TaskErrorCode.UPSTREAM_UNAUTHORIZED,
    RejectReason.UNKNOWN_TASK: TaskErrorCode.UPSTREAM_UNKNOWN_TASK,
}


def model_of(task_id: str) -> str | None:
    """The model prefix of a QuickRouter task id (`veo3.1-fast:…` gives `veo3.1-fast`)."""
    prefix, sep, _ = task_id.partition(":")
    return prefix if sep and prefix else None


def first_delay(
    settings: Settings,
    draw: float,
    learned: Mapping[str, Sequence[float]],
    now: float,
    created: float,
) -> float:
    """Seconds from registration to the first poll: the first backoff delay, or sooner. A
    model not learned yet is polled as the 5-second loop would be, so no later than
    `poll_unlearned_max_delay`; a learned one no later than its first likely end (short tasks
    end before the first backoff delay). The rule of every later poll
    (`tracker.core.estimates.next_poll_at`), on what the task's model taught."""
    delay = poll_delay(0, settings, draw)
    likely = estimates.next_poll_at(
        now, created, (), learned, min_gap(settings), young_gap=settings.poll_unlearned_max_delay
    )
    if likely is None:
        return min(delay, settings.poll_unlearned_max_delay)
    return min(delay, likely - now)


def min_gap(settings: Settings) -> float:
    """The least time between two polls of a task that predictions place (a tenth of the
    first delay: 1 s by default)."""
    return settings.poll_first_delay / 10


def loop_budget_at(polls: int, registered_at: float, settings: Settings) -> float:
    """The earliest moment a task polled `polls` times may be polled again without making
    more than one request beyond those of the loop it replaces (a poll at registration, then
    one every `poll_loop_interval`) by then. The one request of slack keeps the tracker's
    shorter gap (`poll_unlearned_max_delay`) for 160 s rather than 80 (by then most models
    are learned); with none, the task would be polled on the loop's own beat from 80 s on,
    as late as the loop plus the tracker's own time."""
    return registered_at + (polls - 1) * settings.poll_loop_interval


def poll_delay(polls: int, settings: Settings, draw: float) -> float:
    return backoff.poll_delay(
        polls,
        first=settings.poll_first_delay,
        factor=settings.poll_factor,
        cap=settings.poll_max_delay,
        jitter=settings.poll_jitter,
        draw=draw,
    )


def next_step(
    outcome: Outcome,
    *,
    task_id: str,
    polls: int,
    rejections: int,
    last_status: str | None,
    now: float,
    deadline_at: float,
    settings: Settings,
    draw: float,
    predicted_at: float | None = None,
    registered_at: float | None = None,
) -> Step:
    """Decide after poll number `polls` (counting this one) what happens to the task.

    A final answer wins even past the deadline; otherwise the deadline ends the task, and
    the next poll is never scheduled past it. `predicted_at`, when finished tasks of the
    model tell when this one will likely end, replaces the backoff for a running task; without
    it a running task waits at most `poll_unlearned_max_delay`, and no sooner than keeps its
    requests within one of those of a `poll_loop_interval` loop started at `registered_at`.
    """
    if isinstance(outcome, Completed):
        return Finish(
            Result(
                state=TaskState.COMPLETED,
                status=outcome.status,
                video_url=outcome.video_url,
                original_video_url=outcome.original_video_url,
                enhanced_prompt=outcome.enhanced_prompt,
                model=outcome.model or model_of(task_id),
                dropped_urls=outcome.dropped_urls,
            ),
            outcome.body,
        )
    if isinstance(outcome, Failed):
        return Finish(
            Result(
                state=TaskState.FAILED,
                status=outcome.status,
                model=model_of(task_id),
                error_code=TaskErrorCode.UPSTREAM_FAILED,
                error_message=outcome.message,
            ),
            outcome.body,
        )
    if isinstance(outcome, Rejected) and rejections + 1 >= settings.rejection_limit:
        return Finish(
            Result(
                state=TaskState.FAILED,
                status=last_status,
                model=model_of(task_id),
                error_code=_REJECTION_CODES[outcome.reason],
                error_message=outcome.message,
            )
        )
    if now >= deadline_at:
        return Finish(
            Result(
                state=TaskState.TIMED_OUT,
                # What this poll saw, if it saw a status: the first poll can come after the
                # deadline (a fleet that was down), and the event should still say where it was.
                status=outcome.status if isinstance(outcome, Running) else last_status,
                model=model_of(task_id),
                error_code=TaskErrorCode.DEADLINE_EXCEEDED,
                error_message=f"no final status after {settings.poll_deadline:g} s",
            )
        )
    delay = poll_delay(polls, settings, draw)
    if isinstance(outcome, Running) and predicted_at is not None:
        delay = min(max(0.0, predicted_at - now), settings.poll_adaptive_max_delay)
    elif isinstance(outcome, Running):  # a model not learned yet: no guess, so no long wait
        delay = min(delay, settings.poll_unlearned_max_delay)
        if registered_at is not None:
            delay = max(delay, loop_budget_at(polls, registered_at, settings) - now)
    if isinstance(outcome, TryLater) and outcome.retry_after is not None:
        delay = max(delay, outcome.retry_after)
    delay = min(delay, deadline_at - now)
    if isinstance(outcome, Running):
        return Wait(delay, rejections=0, status=outcome.status, upstream=outcome.body)
    if isinstance(outcome, Rejected):
        return Wait(delay, rejections=rejections + 1)
    return Wait(delay, rejections=rejections)
