"""Copies of a finished task's videos in object storage: what is copied, where it goes, and
what each copy came to. Pure decisions; the copying itself is `workers.copy`, the stores
`tracker.net.objects`.

Why the tracker copies at all: the upstream's result links are dated CDN paths that expire
(hours to days), while a webhook is retried for a day and the feed kept for a week. A copy made
when the task completes is the video the event announces, whenever it is read.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tracker.core.records import Result, Subscription, TaskState
from tracker.errors import StorageErrorCode, ValidationFailed

# The outputs a completed task may have, by the name its objects and the event's entries get:
# the final video (upscaled where the model upscales), and the clip before upscaling.
OUTPUT_NAMES = ("video", "original")
MAX_STORAGE_URL_LENGTH = 1024
# Bucket names as S3 allows them (3 to 63 of lowercase letters, digits, dots, hyphens); GCS
# and R2 buckets fit the same rule.
_BUCKET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")


@dataclass(frozen=True)
class Source:
    """One result URL of a task, to be copied as the object `name`."""

    name: str
    url: str


@dataclass(frozen=True)
class Location:
    """Where copies go: `s3://bucket/prefix` (any S3 API: AWS, MinIO, R2, GCS's
    interoperability endpoint) or `file:///folder`. `endpoint` and `region` are for S3 only."""

    scheme: str  # "s3" or "file"
    bucket: str  # the bucket, or the folder's path
    prefix: str  # "" or ends with "/"
    endpoint: str | None = None
    region: str | None = None

    def __str__(self) -> str:
        if self.scheme == "file":
            return f"file://{self.bucket}"
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class Stored:
    """What one output's copy came to: stored (`key`, `size`, `sha256`), or an `error`."""

    name: str
    source_url: str
    key: str = ""
    size: int = 0
    sha256: str = ""
    content_type: str = ""
    error: StorageErrorCode | None = None
    message: str = ""

    def as_json(self) -> dict[str, Any]:
        found = dataclasses.asdict(self)
        found["error"] = None if self.error is None else self.error.value
        return found


def parse_location(url: str) -> Location:
    """The location `url` names; ValidationFailed saying what is wrong with it.

    `s3://bucket/prefix?endpoint=https://minio.example:9000&region=eu-west-1`: the endpoint
    and region may also come from the store's usual environment (AWS_ENDPOINT_URL, AWS_REGION).
    """
    if len(url) > MAX_STORAGE_URL_LENGTH or any(not ch.isprintable() for ch in url):
        raise ValidationFailed("the storage URL is too long or has control characters")
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValidationFailed("a folder is given as file:///absolute/path")
        return Location("file", parts.path.rstrip("/") or "/", "")
    if parts.scheme != "s3":
        raise ValidationFailed("the storage URL must be s3://bucket/prefix or file:///folder")
    bucket = parts.netloc
    if not 3 <= len(bucket) <= 63 or not set(bucket) <= _BUCKET_CHARS:
        raise ValidationFailed("the bucket name must be 3 to 63 lowercase letters, digits, . or -")
    prefix = parts.path.strip("/")
    if any(part in {"", ".", ".."} for part in prefix.split("/")) and prefix:
        raise ValidationFailed("the prefix must not have empty, '.' or '..' parts")
    query = parse_qs(parts.query)
    endpoint = query["endpoint"][0] if "endpoint" in query else None
    if endpoint is not None and urlsplit(endpoint).scheme not in {"http", "https"}:
        raise ValidationFailed("the endpoint must be an http or https URL")
    return Location(
        "s3", bucket, prefix + "/" if prefix else "", endpoint,
        query["region"][0] if "region" in query else None,
    )  # fmt: skip


def sources_of(result: Result) -> tuple[Source, ...]:
    """The result URLs of a completed task to copy, by output name."""
    if result.state is not TaskState.COMPLETED:
        return ()
    found = (("video", result.video_url), ("original", result.original_video_url))
    return tuple(Source(name, url) for name, url in found if url)


def wants_copies(sub: Subscription, result: Result) -> bool:
    """Whether `sub`'s final event waits for copies of `result`'s videos (and carries them)."""
    return sub.keep_videos and bool(sources_of(result))


def object_key(location: Location, client_id: str, task_id: str, name: str) -> str:
    """The object's key: stable (`{prefix}{client}/{task}/{name}`), so a copy made twice
    lands on the same object. A task id of dots only would be a path step in a folder."""
    component = task_id if task_id.strip(".") else task_id.replace(".", "%2E")
    return f"{location.prefix}{client_id}/{component}/{name}"


def length_refused(announced: int | None, max_bytes: int) -> Stored | None:
    """The verdict on a download's announced length before any byte is read."""
    if announced is not None and announced > max_bytes:
        return Stored("", "", error=StorageErrorCode.TOO_LARGE, message=_too_large(max_bytes))
    return None


def _too_large(max_bytes: int) -> str:
    return f"larger than TRACKER_STORAGE_MAX_BYTES ({max_bytes} bytes)"


def received_refused(received: int, announced: int | None, max_bytes: int) -> Stored | None:
    """The verdict on `received` bytes so far (None: go on). Past the cap or past the announced
    length, the copy stops at once: a lying Content-Length never makes it read without end."""
    if received > max_bytes:
        return Stored("", "", error=StorageErrorCode.TOO_LARGE, message=_too_large(max_bytes))
    if announced is not None and received > announced:
        return Stored(
            "", "", error=StorageErrorCode.LENGTH_MISMATCH,
            message=f"more bytes than the {announced} announced",
        )  # fmt: skip
    return None


def ended_refused(received: int, announced: int | None) -> Stored | None:
    """The verdict on a download that ended after `received` bytes: short of the announced
    length, the stream was cut."""
    if announced is not None and received != announced:
        return Stored(
            "", "", error=StorageErrorCode.SOURCE_CUT,
            message=f"the download ended after {received} of {announced} bytes",
        )  # fmt: skip
    return None


def source_status_error(status: int) -> StorageErrorCode | None:
    """What an upstream link's answer status means for its copy (None: 2xx, go on).

    403, 404 and 410 are a link that expired or never was: for good. Anything else may pass
    (a 5xx, a 429): the copy is tried again until its deadline."""
    if 200 <= status < 300:
        return None
    if status in {401, 403, 404, 410}:
        return StorageErrorCode.SOURCE_GONE
    return StorageErrorCode.SOURCE_FAILED


def is_final_error(code: StorageErrorCode) -> bool:
    """Whether trying the copy again cannot help (else it is tried until its deadline)."""
    return code not in _PASSING


_PASSING = frozenset(
    {
        StorageErrorCode.SOURCE_FAILED,
        StorageErrorCode.SOURCE_CUT,
        StorageErrorCode.STORE_UNREACHABLE,
    }
)


# A try that failed in a way another may mend waits 5 s, twice as long after each, up to this.
FIRST_RETRY_DELAY = 5.0
MAX_RETRY_DELAY = 120.0


def retry_delay(tries: int, now: float, deadline_at: float) -> float | None:
    """How long to wait before trying a copy again after its `tries`-th failed try (0 for
    the first), never past its deadline; None once the deadline has passed (the event then
    goes out with the errors as they are)."""
    if now >= deadline_at:
        return None
    backoff = FIRST_RETRY_DELAY * 2.0 ** min(tries, 16)
    return min(MAX_RETRY_DELAY, backoff, deadline_at - now)


def outputs_json(stored: list[Stored]) -> str:
    return json.dumps([s.as_json() for s in stored], separators=(",", ":"))


def outputs_from_json(raw: str | bytes | None) -> list[Stored]:
    if not raw:
        return []
    found = []
    for item in json.loads(raw):
        error = item.pop("error", None)
        found.append(Stored(**item, error=None if error is None else StorageErrorCode(error)))
    return found


def event_outputs(
    stored: list[Stored], location: Location | None, links: dict[str, tuple[str, str]]
) -> list[dict[str, Any]]:
    """The event's `data.outputs`: each output where it is stored, its size, sha256, content
    type and a link with its expiry (`links`: name -> (url, expiry in ISO 8601)); or its
    error."""
    found: list[dict[str, Any]] = []
    for item in stored:
        if item.error is not None:
            found.append(
                {
                    "name": item.name, "source_url": item.source_url, "stored": False,
                    "error": {"code": item.error.value, "message": item.message},
                }
            )  # fmt: skip
            continue
        link = links.get(item.name)
        found.append(
            {
                "name": item.name,
                "source_url": item.source_url,
                "stored": True,
                "location": _location_of(location, item.key),
                "size": item.size,
                "sha256": item.sha256,
                "content_type": item.content_type,
                "url": link[0] if link else None,
                "url_expires_at": link[1] if link else None,
            }
        )
    return found


def _location_of(location: Location | None, key: str) -> str:
    if location is None:
        return key
    if location.scheme == "file":
        return f"file://{location.bucket}/{key}"
    return f"s3://{location.bucket}/{key}"
