"""The pure decisions about copies (`tracker.core.storage`), directly and exhaustively."""

from __future__ import annotations

import pytest

from tracker.core import storage
from tracker.core.records import EventType, Result, Subscription, SubscriptionState, TaskState
from tracker.core.storage import Location, Source, Stored
from tracker.errors import StorageErrorCode, ValidationFailed


def test_locations_read_from_urls() -> None:
    assert storage.parse_location("s3://videos/a/b/") == Location("s3", "videos", "a/b/")
    assert storage.parse_location("s3://videos") == Location("s3", "videos", "")
    found = storage.parse_location("s3://vid.eos-1/p?endpoint=https://m.example:9000&region=eu")
    assert (found.endpoint, found.region, found.prefix) == ("https://m.example:9000", "eu", "p/")
    assert storage.parse_location("file:///srv/videos/") == Location("file", "/srv/videos", "")
    assert str(storage.parse_location("s3://videos/p")) == "s3://videos/p/"


@pytest.mark.parametrize(
    "url",
    [
        "gs://videos/p", "http://videos/p", "s3://Videos/p", "s3://ab/p", "s3://" + "a" * 64,
        "s3://vid_eos/p", "s3://videos/a/../b", "s3://videos/a//b", "file://host/srv",
        "file:relative", "s3://videos/p?endpoint=ftp://x", "s3://videos/\x00",
        "s3://videos/" + "p" * 1100,
    ],
)  # fmt: skip
def test_bad_locations_are_refused(url: str) -> None:
    with pytest.raises(ValidationFailed):
        storage.parse_location(url)


def test_the_outputs_of_a_result() -> None:
    done = Result(
        TaskState.COMPLETED, "completed", video_url="https://v/4k", original_video_url="https://v/c"
    )
    assert storage.sources_of(done) == (
        Source("video", "https://v/4k"),
        Source("original", "https://v/c"),
    )
    only = Result(TaskState.COMPLETED, "completed", video_url="https://v/4k")
    assert storage.sources_of(only) == (Source("video", "https://v/4k"),)
    assert storage.sources_of(Result(TaskState.COMPLETED, "completed")) == ()
    failed = Result(TaskState.FAILED, "failed", video_url="https://v/4k")
    assert storage.sources_of(failed) == ()
    sub = Subscription("sub_1", "t", "cli_1", "", {}, (EventType.COMPLETED,),
                       SubscriptionState.ACTIVE, 0.0, keep_videos=True)  # fmt: skip
    assert storage.wants_copies(sub, done)
    assert not storage.wants_copies(sub, failed)
    assert not storage.wants_copies(sub, Result(TaskState.COMPLETED, "completed"))


def test_object_keys_are_stable_and_stay_in_their_folder() -> None:
    where = Location("s3", "videos", "p/")
    assert storage.object_key(where, "cli_1", "veo3:1-a", "video") == "p/cli_1/veo3:1-a/video"
    assert storage.object_key(where, "cli_1", "..", "video") == "p/cli_1/%2E%2E/video"
    assert storage.object_key(where, "cli_1", ".", "video") == "p/cli_1/%2E/video"


def test_lengths_are_judged_before_and_while_reading() -> None:
    cap = 1000
    assert storage.length_refused(None, cap) is None
    assert storage.length_refused(1000, cap) is None
    too_large = storage.length_refused(1001, cap)
    assert too_large is not None and too_large.error is StorageErrorCode.TOO_LARGE
    assert storage.received_refused(500, 600, cap) is None
    assert storage.received_refused(500, None, cap) is None
    more = storage.received_refused(601, 600, cap)
    assert more is not None and more.error is StorageErrorCode.LENGTH_MISMATCH
    past = storage.received_refused(1001, None, cap)
    assert past is not None and past.error is StorageErrorCode.TOO_LARGE
    assert storage.ended_refused(600, 600) is None
    assert storage.ended_refused(10, None) is None
    cut = storage.ended_refused(599, 600)
    assert cut is not None and cut.error is StorageErrorCode.SOURCE_CUT


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (200, None), (206, None), (401, StorageErrorCode.SOURCE_GONE),
        (403, StorageErrorCode.SOURCE_GONE), (404, StorageErrorCode.SOURCE_GONE),
        (410, StorageErrorCode.SOURCE_GONE), (429, StorageErrorCode.SOURCE_FAILED),
        (500, StorageErrorCode.SOURCE_FAILED), (304, StorageErrorCode.SOURCE_FAILED),
    ],
)  # fmt: skip
def test_what_a_links_answer_means(status: int, code: StorageErrorCode | None) -> None:
    assert storage.source_status_error(status) is code


def test_which_failures_another_try_may_mend() -> None:
    passing = {c for c in StorageErrorCode if not storage.is_final_error(c)}
    assert passing == {
        StorageErrorCode.SOURCE_FAILED, StorageErrorCode.SOURCE_CUT,
        StorageErrorCode.STORE_UNREACHABLE,
    }  # fmt: skip


def test_tries_back_off_and_never_pass_the_deadline() -> None:
    assert storage.retry_delay(0, 100.0, 1000.0) == 5.0
    assert storage.retry_delay(1, 100.0, 1000.0) == 10.0
    assert storage.retry_delay(10, 100.0, 1000.0) == storage.MAX_RETRY_DELAY
    assert storage.retry_delay(1000, 100.0, 1000.0) == storage.MAX_RETRY_DELAY
    assert storage.retry_delay(3, 995.0, 1000.0) == 5.0  # what is left of the deadline
    assert storage.retry_delay(0, 1000.0, 1000.0) is None


def test_the_events_outputs_and_their_json_round_trip() -> None:
    stored = [
        Stored("video", "https://v/4k", key="p/cli/t/video", size=3, sha256="ab",
               content_type="video/mp4"),
        Stored("original", "https://v/c", error=StorageErrorCode.SOURCE_GONE, message="404"),
    ]  # fmt: skip
    assert storage.outputs_from_json(storage.outputs_json(stored)) == stored
    assert storage.outputs_from_json(None) == []
    where = Location("s3", "videos", "p/")
    shown = storage.event_outputs(
        stored, where, {"video": ("https://link", "2026-01-01T00:00:00Z")}
    )
    assert shown[0] == {
        "name": "video", "source_url": "https://v/4k", "stored": True,
        "location": "s3://videos/p/cli/t/video", "size": 3, "sha256": "ab",
        "content_type": "video/mp4", "url": "https://link",
        "url_expires_at": "2026-01-01T00:00:00Z",
    }  # fmt: skip
    assert shown[1] == {
        "name": "original", "source_url": "https://v/c", "stored": False,
        "error": {"code": "storage_source_gone", "message": "404"},
    }  # fmt: skip
    folder = storage.event_outputs(stored[:1], Location("file", "/srv/v", ""), {})
    assert folder[0]["location"] == "file:///srv/v/p/cli/t/video"
    assert folder[0]["url"] is None
