"""The upstream reader, on the doc's own example and on every status and failure."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker.core.upstream import (
    FAILURE_STATUSES,
    Completed,
    Failed,
    Rejected,
    RejectReason,
    Running,
    TryLater,
    error_text,
    read_response,
)
from tracker.devtools.scenarios import UNSAFE_PROMPT, doc_example

RUNNING_STATUSES = [
    "pending", "prompt_enhancement_checking", "prompt_enhancing", "image_downloading",
    "image_cropping", "image_uploading", "image_processing_completed", "video_generating",
    "video_generation_completed", "video_upsampling", "video_upsampling_completed",
    "processing", "some_future_status",
]  # fmt: skip


def read(body: Any, status_code: int = 200, **kwargs: Any) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return read_response(status_code, kwargs.pop("headers", {}), raw, **kwargs)


def test_the_docs_example_is_completed_with_the_upscaled_video_despite_stale_errors() -> None:
    outcome = read(doc_example())
    assert isinstance(outcome, Completed)
    assert outcome.video_url == (
        "https://pro.filesystem.site/cdn/20260206/1b50395bad4c6c7bc22e6ada144951.mp4"
    )
    assert outcome.original_video_url == (
        "https://pro.filesystem.site/cdn/20260206/9ddbd3bdc67f75a02f766363ebf8eb.mp4"
    )
    assert outcome.enhanced_prompt is not None
    assert outcome.enhanced_prompt.startswith("Create a vibrant")
    assert outcome.model == "veo3.1-fast"


@pytest.mark.parametrize("status", RUNNING_STATUSES)
def test_every_status_on_the_way_is_running(status: str) -> None:
    outcome = read({"status": status, "detail": {"video_url": "https://x/preview.mp4"}})
    assert outcome == Running(
        status, {"status": status, "detail": {"video_url": "https://x/preview.mp4"}}
    )


def test_a_preview_url_alone_does_not_end_the_task() -> None:
    assert isinstance(read({"status": "video_generating", "video_url": "https://x/p.mp4"}), Running)


@pytest.mark.parametrize("status", ["completed", "success", "COMPLETED", " Success "])
def test_success_statuses(status: str) -> None:
    outcome = read({"status": status, "video_url": "https://x/v.mp4"})
    assert isinstance(outcome, Completed)
    assert outcome.video_url == "https://x/v.mp4"
    assert outcome.original_video_url is None


def test_video_url_falls_back_to_upsample_then_clip() -> None:
    upsampled = read(
        {
            "status": "completed",
            "detail": {"upsample_video_url": "https://x/4k", "video_url": "https://x/clip"},
        }
    )
    assert (upsampled.video_url, upsampled.original_video_url) == ("https://x/4k", "https://x/clip")
    clip_only = read({"status": "completed", "detail": {"video_url": "https://x/clip"}})
    assert (clip_only.video_url, clip_only.original_video_url) == ("https://x/clip", None)


@pytest.mark.parametrize("status", sorted(FAILURE_STATUSES))
def test_every_failure_status_fails_with_its_text(status: str) -> None:
    body = {"status": status, "detail": {"error_message": "boom"}}
    assert read(body, seen_running=True) == Failed(status, body, "boom")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {
                "detail": {
                    "video_generation_error": "a",
                    "error_message": "b",
                    "upsample_error": "c",
                },
                "error": "d",
            },
            "a",
        ),
        ({"detail": {"error_message": "b", "upsample_error": "c"}, "error": "d"}, "b"),
        ({"detail": {"upsample_error": "c"}, "error": "d", "fail_reason": "e"}, "c"),
        ({"error": {"code": "x", "message": "d"}, "fail_reason": "e"}, "d"),
        ({"error": "d", "fail_reason": "e"}, "d"),
        ({"fail_reason": "e", "message": "f"}, "e"),
        ({"message": "f"}, "f"),
        ({"detail": {"video_generation_error": ""}, "error": None}, None),
    ],
)
def test_error_text_follows_the_documented_order(body: dict[str, Any], expected: str) -> None:
    assert error_text(body) == expected


def test_generation_failure_carries_googles_message() -> None:
    body = {
        "status": "video_generation_failed",
        "detail": {"video_generation_error": UNSAFE_PROMPT},
    }
    outcome = read(body)
    assert isinstance(outcome, Failed)
    assert outcome.message == UNSAFE_PROMPT


def test_error_without_detail_for_a_task_never_seen_is_an_unknown_id() -> None:
    body = {"status": "error", "error": {"message": "task not found"}}
    assert read(body) == Rejected(RejectReason.UNKNOWN_TASK, "task not found")
    assert isinstance(read(body, seen_running=True), Failed)
    with_detail = {"status": "error", "detail": {"error_message": "backend"}}
    assert isinstance(read(with_detail), Failed)


@pytest.mark.parametrize(
    ("status_code", "reason"),
    [
        (401, RejectReason.UNAUTHORIZED),
        (403, RejectReason.UNAUTHORIZED),
        (404, RejectReason.UNKNOWN_TASK),
    ],
)
def test_refusals_are_rejections(status_code: int, reason: RejectReason) -> None:
    outcome = read({"error": {"message": "invalid token"}}, status_code)
    assert isinstance(outcome, Rejected)
    assert outcome.reason is reason


@pytest.mark.parametrize(
    ("status_code", "headers", "body", "retry_after"),
    [
        (429, {}, b"", None),
        (429, {"Retry-After": "7"}, b"", 7.0),
        (429, {}, b'{"error": {"message": "busy", "type": "new_api_error"}}', None),
        (500, {}, b"oops", None),
        (502, {"retry-after": "2"}, b"", 2.0),
        (503, {}, b"", None),
        (408, {}, b"", None),
    ],
)
def test_throttles_and_server_errors_mean_try_later(
    status_code: int, headers: dict[str, str], body: bytes, retry_after: float | None
) -> None:
    outcome = read_response(status_code, headers, body)
    assert isinstance(outcome, TryLater)
    assert outcome.retry_after == retry_after


@pytest.mark.parametrize(
    "body", [b"", b"{not json", b"[1, 2]", b'"completed"', b"{}", b'{"status": 3}', b"\xff\xfe"]
)
def test_broken_bodies_mean_try_later(body: bytes) -> None:
    assert isinstance(read_response(200, {}, body), TryLater)


@given(
    status_code=st.integers(100, 599),
    body=st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=4)
                | st.dictionaries(
                    st.sampled_from(
                        [
                            "status",
                            "detail",
                            "video_url",
                            "error",
                            "message",
                            "fail_reason",
                            "req",
                            "model",
                        ]
                    ),
                    children,
                    max_size=5,
                )
            ),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
    ),
    seen=st.booleans(),
)
def test_any_answer_gives_an_outcome_and_never_raises(
    status_code: int, body: bytes, seen: bool
) -> None:
    outcome = read_response(status_code, {"retry-after": "x"}, body, seen_running=seen)
    assert isinstance(outcome, Running | Completed | Failed | TryLater | Rejected)


def test_a_summary_keeps_the_top_level_scalars_only() -> None:
    from tracker.core.upstream import summary

    body = {**doc_example(), "note": "x" * 600, "flag": True, "n": 3, "none": None}
    kept = summary(body)
    assert set(kept) == {"id", "status", "video_url", "status_update_time", "flag", "n", "none"}
    assert "detail" not in kept
