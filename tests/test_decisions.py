"""The pure decisions: poll delays, the step after a poll, and a delivery's next move."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker.core import backoff, delivery, polling
from tracker.core.records import TaskState
from tracker.core.upstream import Completed, Failed, Rejected, RejectReason, Running, TryLater
from tracker.errors import TaskErrorCode
from tracker.settings import Settings

SETTINGS = Settings()  # the defaults, made for Veo


def step(outcome: Any, **changes: Any) -> polling.Step:
    args: dict[str, Any] = {
        "task_id": "veo3.1-fast:1770350082-abc",
        "polls": 1,
        "rejections": 0,
        "last_status": "video_generating",
        "now": 1000.0,
        "deadline_at": 2800.0,
        "settings": SETTINGS,
        "draw": 0.5,
    }
    args.update(changes)
    return polling.next_step(outcome, **args)


# -- backoff -------------------------------------------------------------------------------------


def test_poll_delays_grow_to_the_cap_without_jitter() -> None:
    delays = [
        backoff.poll_delay(n, first=10, factor=1.5, cap=30, jitter=0.1, draw=0.5) for n in range(6)
    ]
    assert delays == [10, 10, 15, 22.5, 30, 30]


@given(polls=st.integers(0, 10_000), draw=st.floats(0, 1, exclude_max=True))
def test_poll_delay_stays_within_jitter_of_the_cap(polls: int, draw: float) -> None:
    delay = backoff.poll_delay(polls, first=10, factor=1.5, cap=30, jitter=0.1, draw=draw)
    assert 9.0 <= delay <= 33.0


def test_default_polling_fits_veo() -> None:
    """A 3-minute Veo task costs a handful of polls, not the 36 of a 5 s loop."""
    elapsed, polls = polling.poll_delay(0, SETTINGS, 0.5), 0
    while elapsed < 180:
        polls += 1
        elapsed += polling.poll_delay(polls, SETTINGS, 0.5)
    assert polls + 1 <= 10
    assert SETTINGS.poll_deadline >= 20 * 60


def test_delivery_delays_follow_the_schedule_then_stop() -> None:
    schedule = (5.0, 300.0)
    assert backoff.delivery_delay(1, schedule, jitter=0.2, draw=0.5) == 5.0
    assert backoff.delivery_delay(2, schedule, jitter=0.2, draw=0.0) == pytest.approx(240.0)
    assert backoff.delivery_delay(3, schedule, jitter=0.2, draw=0.5) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None), ("", None), ("12", 12.0), (" 3.5 ", 3.5), ("-4", 0.0), ("nope", None),
        ("99999999", backoff.MAX_RETRY_AFTER), ("nan", None),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),
    ],
)  # fmt: skip
def test_retry_after(value: str | None, expected: float | None) -> None:
    now = 1445412480.0  # 07:28:00 that day
    assert backoff.parse_retry_after(value, now) == expected


# -- the step after a poll -------------------------------------------------------------------------


def test_running_waits_and_records_the_status() -> None:
    result = step(Running("video_generating", {"status": "video_generating"}), polls=3)
    # The backoff says 22.5 s; a model not learned yet waits TRACKER_POLL_UNLEARNED_MAX_DELAY.
    assert result == polling.Wait(4.7, 0, "video_generating", {"status": "video_generating"})


def test_completed_finishes_with_the_urls_and_the_model_from_the_id() -> None:
    outcome = Completed(
        "completed", {"status": "completed"}, "https://v/4k", "https://v/clip", "prompt+", None
    )
    result = step(outcome)
    assert isinstance(result, polling.Finish)
    assert result.result.state is TaskState.COMPLETED
    assert (result.result.video_url, result.result.original_video_url) == (
        "https://v/4k",
        "https://v/clip",
    )
    assert result.result.model == "veo3.1-fast"


def test_completion_wins_over_the_deadline() -> None:
    outcome = Completed("completed", {}, "https://v", None, None, "veo3")
    result = step(outcome, now=5000.0)
    assert isinstance(result, polling.Finish)
    assert result.result.state is TaskState.COMPLETED


def test_failure_carries_the_upstream_text() -> None:
    result = step(Failed("failed", {}, "unsafe prompt"))
    assert isinstance(result, polling.Finish)
    assert result.result.state is TaskState.FAILED
    assert result.result.error_code == TaskErrorCode.UPSTREAM_FAILED
    assert result.result.error_message == "unsafe prompt"


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        (RejectReason.UNAUTHORIZED, TaskErrorCode.UPSTREAM_UNAUTHORIZED),
        (RejectReason.UNKNOWN_TASK, TaskErrorCode.UPSTREAM_UNKNOWN_TASK),
    ],
)
def test_rejections_are_retried_then_fail_with_a_clear_code(
    reason: RejectReason, code: TaskErrorCode
) -> None:
    outcome = Rejected(reason, "no")
    first = step(outcome, rejections=0)
    assert isinstance(first, polling.Wait)
    assert first.rejections == 1
    last = step(outcome, rejections=SETTINGS.rejection_limit - 1)
    assert isinstance(last, polling.Finish)
    assert last.result.error_code == code


def test_a_running_answer_resets_the_rejection_count() -> None:
    result = step(Running("pending", {}), rejections=2)
    assert isinstance(result, polling.Wait)
    assert result.rejections == 0


@pytest.mark.parametrize(
    "outcome", [TryLater("429"), TryLater("500"), TryLater("timeout"), TryLater("bad json")]
)
def test_try_later_never_fails_the_task(outcome: TryLater) -> None:
    for polls in range(1, 200):
        assert isinstance(step(outcome, polls=polls, rejections=0), polling.Wait)


def test_retry_after_lengthens_the_wait() -> None:
    result = step(TryLater("429", retry_after=120.0))
    assert isinstance(result, polling.Wait)
    assert result.delay == 120.0


def test_the_next_poll_is_never_past_the_deadline() -> None:
    result = step(Running("video_generating", {}), polls=9, now=2797.0)
    assert isinstance(result, polling.Wait)
    assert result.delay == 3.0


@pytest.mark.parametrize(
    "outcome",
    [Running("video_generating", {}), TryLater("500"), Rejected(RejectReason.UNAUTHORIZED, "x")],
)
def test_the_deadline_times_out_a_task_still_running(outcome: Any) -> None:
    result = step(outcome, now=2800.0)
    assert isinstance(result, polling.Finish)
    assert result.result.state is TaskState.TIMED_OUT
    assert result.result.error_code == TaskErrorCode.DEADLINE_EXCEEDED
    assert result.result.status == "video_generating"


@pytest.mark.parametrize(
    ("task_id", "model"),
    [
        ("veo3.1-fast:1770350082-x", "veo3.1-fast"),
        ("sora-2:task_1", "sora-2"),
        ("plainid", None),
        (":x", None),
    ],
)
def test_model_of(task_id: str, model: str | None) -> None:
    assert polling.model_of(task_id) == model


# -- deliveries ----------------------------------------------------------------------------------


def decide(status: int | None, attempts: int = 1, retry_after: float | None = None) -> Any:
    return delivery.decide(
        status,
        attempts=attempts,
        retry_after=retry_after,
        schedule=(5.0, 300.0),
        jitter=0.0,
        draw=0.5,
    )


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_a_2xx_is_delivered(status: int) -> None:
    assert decide(status) == delivery.Decision(delivery.Verdict.DELIVERED)


def test_410_disables_the_subscription() -> None:
    assert decide(410).verdict is delivery.Verdict.GONE


@pytest.mark.parametrize("status", [None, 301, 302, 307, 400, 401, 404, 408, 429, 500, 503])
def test_everything_else_is_retried_on_the_schedule_then_dead(status: int | None) -> None:
    assert decide(status, 1) == delivery.Decision(delivery.Verdict.RETRY, 5.0)
    assert decide(status, 2) == delivery.Decision(delivery.Verdict.RETRY, 300.0)
    assert decide(status, 3) == delivery.Decision(delivery.Verdict.DEAD)


@pytest.mark.parametrize(("status", "delay"), [(429, 60.0), (503, 60.0), (400, 5.0), (302, 5.0)])
def test_retry_after_is_honoured_on_429_and_5xx_only(status: int, delay: float) -> None:
    assert decide(status, 1, retry_after=60.0).delay == delay
