"""Hostile upstream answers: text that is not Unicode, NaN, answers of many megabytes, result
URLs that are not http(s). Each is repaired or refused, and no task is stuck (issue 10,
cases 1, 2 and 9)."""

from __future__ import annotations

import pytest
import redis

from tests.support import Trip, WorkerProcess
from tracker.core.upstream import MAX_ANSWER_BYTES, Completed, Running, TryLater, read_response
from tracker.devtools.scenarios import Fault, Scenario
from tracker.store import keys

JSON = {"content-type": "application/json"}


def test_a_lone_surrogate_from_upstream_is_replaced() -> None:
    body = b'{"status": "completed", "video_url": "https://cdn.test/v.mp4", "note": "a\\ud800b"}'
    outcome = read_response(200, JSON, body)
    assert isinstance(outcome, Completed)
    assert outcome.body["note"] == "a\ufffdb"


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_from_upstream_is_an_unreadable_answer(constant: bytes) -> None:
    outcome = read_response(
        200, JSON, b'{"status": "video_generating", "progress": ' + constant + b"}"
    )
    assert isinstance(outcome, TryLater)
    assert "unreadable" in outcome.reason


def test_an_answer_nested_past_any_real_one_is_unreadable() -> None:
    outcome = read_response(
        200, JSON, b'{"status": "pending", "x": ' + b"[" * 100 + b"]" * 100 + b"}"
    )
    assert isinstance(outcome, TryLater)


def test_result_urls_that_are_not_http_are_dropped_and_named() -> None:
    body = (
        b'{"status": "completed", "video_url": "javascript:alert(1)", "detail": {"video_url": '
        b'"file:///etc/passwd", "upsample_video_url": "https://cdn.test/4k.mp4"}}'
    )
    outcome = read_response(200, JSON, body)
    assert isinstance(outcome, Completed)
    assert outcome.video_url == "https://cdn.test/4k.mp4"
    assert outcome.original_video_url is None
    assert outcome.dropped_urls == ("video_url", "detail.video_url")
    assert outcome.body["video_url"] is None  # the copy passed on is cleaned too
    assert outcome.body["detail"]["video_url"] is None
    running = read_response(200, JSON, b'{"status": "pending"}')
    assert isinstance(running, Running)


@pytest.mark.slow
@pytest.mark.parametrize("fault", [Fault.LONE_SURROGATE, Fault.NAN, Fault.HUGE])
def test_a_hostile_answer_mid_task_delays_it_and_nothing_else(
    trip: Trip, worker: WorkerProcess, redis_url: str, fault: Fault
) -> None:
    task = trip.script(duration=0.3, faults=[fault, fault])
    trip.register(task.task_id)
    view = trip.settled(task.task_id)
    assert view["state"] == "completed"
    assert trip.simulator.requests(task.task_id) >= 3
    _, event = trip.only_webhook()
    assert event["data"]["video_url"].startswith("https://")
    with redis.Redis.from_url(redis_url) as conn:
        assert len(conn.hget(keys.HOME.task(task.task_id), "snapshot") or b"") < MAX_ANSWER_BYTES


@pytest.mark.slow
def test_a_final_answer_with_bad_text_and_bad_urls_still_ends_the_task_for_everyone(
    trip: Trip, worker: WorkerProcess
) -> None:
    task = trip.script(scenario=Scenario.HOSTILE_RESULT, duration=0.2)
    trip.register(task.task_id)
    trip.settled(task.task_id)
    _, event = trip.only_webhook()
    data = event["data"]
    assert data["state"] == "completed"
    assert data["video_url"] == data["upstream"]["detail"]["upsample_video_url"]
    assert data["original_video_url"] is None
    assert data["dropped_urls"] == ["video_url", "detail.video_url"]
    assert "\ufffd" in data["enhanced_prompt"]
