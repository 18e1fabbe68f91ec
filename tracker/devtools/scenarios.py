"""The simulator's scripts: scenarios, faults, and the answers a scripted task gives at each
status, shaped like QuickRouter's (see shared/upstream/UPSTREAM.md)."""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tracker.core.upstream import FAILURE_STATUSES


class Scenario(StrEnum):
    SUCCESS = "success"  # with upscaling: the final video differs from the clip
    SUCCESS_NO_UPSCALE = "success_no_upscale"
    PREVIEW_URL = "preview_url"  # a top-level video_url shows up before `completed`
    DOC_EXAMPLE = "doc_example"  # ends as the doc's example: completed, with stale errors
    FAIL_GENERATION = "fail_generation"  # video_generation_failed
    FAIL_UPSAMPLING = "fail_upsampling"  # video_upsampling_failed
    FAILED = "failed"
    ERROR = "error"  # status `error` with task detail: a real failure
    UNAUTHORIZED = "unauthorized"  # always 401 for this task
    NEVER_ENDS = "never_ends"  # stays in video_generating
    # Completes with a lone surrogate in its text and result URLs that are not http(s).
    HOSTILE_RESULT = "hostile_result"


class Fault(StrEnum):
    RATE_LIMITED = "429"  # no Retry-After, plain JSON body
    RATE_LIMITED_RETRY_AFTER = "429_retry_after"  # Retry-After: 1
    RATE_LIMITED_EMPTY = "429_empty"  # no body at all
    RATE_LIMITED_NEW_API = "429_new_api"  # New API's error body
    SERVER_ERROR = "500"
    SLOW = "slow"  # answers after `Simulator.slow_delay` seconds
    BROKEN_JSON = "broken_json"
    LONE_SURROGATE = "lone_surrogate"  # a running answer with text that is not Unicode
    NAN = "nan"  # a running answer with NaN in it (Python's json writes it; it is not JSON)
    HUGE = "huge"  # an answer of 8 MiB


EARLY = ["pending", "prompt_enhancement_checking", "prompt_enhancing", "image_downloading"]
STEPS: dict[Scenario, tuple[list[str], str]] = {
    Scenario.SUCCESS: (
        [
            *EARLY,
            "video_generating",
            "video_generation_completed",
            "video_upsampling",
            "video_upsampling_completed",
        ],
        "completed",
    ),
    Scenario.SUCCESS_NO_UPSCALE: (
        [*EARLY, "video_generating", "video_generation_completed"],
        "completed",
    ),
    Scenario.PREVIEW_URL: (
        [*EARLY, "video_generating", "video_generation_completed"],
        "completed",
    ),
    Scenario.DOC_EXAMPLE: ([*EARLY, "video_generating", "video_upsampling"], "completed"),
    Scenario.FAIL_GENERATION: ([*EARLY, "video_generating"], "video_generation_failed"),
    Scenario.FAIL_UPSAMPLING: (
        [*EARLY, "video_generating", "video_generation_completed", "video_upsampling"],
        "video_upsampling_failed",
    ),
    Scenario.FAILED: ([*EARLY, "video_generating"], "failed"),
    Scenario.ERROR: ([*EARLY, "video_generating"], "error"),
    Scenario.UNAUTHORIZED: (["pending"], "pending"),
    Scenario.NEVER_ENDS: (["pending", "video_generating"], "video_generating"),
    Scenario.HOSTILE_RESULT: ([*EARLY, "video_generating", "video_upsampling"], "completed"),
}

UNSAFE_PROMPT = (
    "your request contains unsafe prompt or images, such as porn, violence, minors etc., has "
    "been rejected by google, please change your prompt or images and try again"
)
RECAPTCHA_403 = (
    "[403] Request failed with status code 403 | Message: reCAPTCHA evaluation failed | "
    "Code: 403 | Status: PERMISSION_DENIED"
)


@dataclass
class Files:
    """How a task's result files are served (`GET /sim/files/…`): their size, how fast, cut
    short on the first `cuts` requests after `cut_at` bytes, gone (404) `gone_after` seconds
    after the task ended, and a Content-Length that lies (`announce`)."""

    size: int = 256 * 1024
    rate: float = 0.0  # bytes per second; 0: as fast as it goes
    cut_at: int | None = None
    cuts: int = 1
    gone_after: float | None = None
    announce: int | None = None
    content_type: str = "video/mp4"

    @classmethod
    def of(cls, spec: Any) -> Files:
        if isinstance(spec, Files):
            return spec
        if spec is None:
            return cls()
        if not isinstance(spec, dict):
            raise ValueError("files must be an object")
        return cls(**spec)


BLOCK = 64 * 1024


def file_block(name: str) -> bytes:
    """The 64 KiB a file's bytes repeat: every file's content follows from its name."""
    return hashlib.shake_256(name.encode()).digest(BLOCK)


def file_bytes(name: str, size: int, start: int = 0) -> Iterator[bytes]:
    """The bytes of the file `name` of `size` bytes from `start`, in chunks of up to 64 KiB."""
    block = file_block(name)
    at = start
    while at < size:
        offset = at % BLOCK
        chunk = block[offset : offset + min(BLOCK - offset, size - at)]
        at += len(chunk)
        yield chunk


def file_sha256(name: str, size: int) -> str:
    """What the file `name` of `size` bytes hashes to (what a copy must come to)."""
    digest = hashlib.sha256()
    for chunk in file_bytes(name, size):
        digest.update(chunk)
    return digest.hexdigest()


@dataclass
class SimTask:
    task_id: str
    scenario: Scenario
    duration: float
    faults: list[Fault]
    model: str
    created_wall: float
    created_clock: float
    speed: float = 1.0
    # Where each status step starts, as a fraction of the duration (the first is 0).
    starts: tuple[float, ...] = (0.0,)
    requests: int = 0
    final_seen_at: float | None = None  # wall time of the first answer with the final status
    # What its first answers said, as (simulated seconds since it was made, status): where a
    # benchmark's late tasks were polled.
    answers: list[tuple[float, str]] = field(default_factory=list)
    owner: str | None = None  # the key that created it, the only one that sees it (None: any)
    files: Files = field(default_factory=Files)
    # Where its result files are served (the simulator's address); "": made-up CDN links.
    files_url: str = ""

    @property
    def final_at(self) -> float:
        """Wall time at which the task turns final."""
        return self.created_wall + self.duration / self.speed


# Veo spends most of its time generating, then upscaling; the other steps are short.
_STEP_WEIGHTS = {"video_generating": 8.0, "video_upsampling": 3.0}


def step_starts(steps: list[str], task_id: str) -> tuple[float, ...]:
    """Fractions of the duration at which each step starts; step lengths vary by task."""
    rng = random.Random(task_id)
    weights = [_STEP_WEIGHTS.get(step, 1.0) * rng.uniform(0.7, 1.3) for step in steps]
    total = sum(weights)
    starts, at = [], 0.0
    for weight in weights:
        starts.append(at / total)
        at += weight
    return tuple(starts)


def fault_answer(fault: Fault) -> tuple[int, dict[str, str], bytes] | None:
    json_type = {"content-type": "application/json"}
    limited = json.dumps({"error": "rate limited"}).encode()
    if fault is Fault.RATE_LIMITED:
        return 429, json_type, limited
    if fault is Fault.RATE_LIMITED_RETRY_AFTER:
        return 429, {**json_type, "retry-after": "1"}, limited
    if fault is Fault.RATE_LIMITED_EMPTY:
        return 429, {}, b""
    if fault is Fault.RATE_LIMITED_NEW_API:
        body = {"error": {"message": "当前分组上游负载已饱和, 请稍后再试", "type": "new_api_error"}}
        return 429, json_type, json.dumps(body, ensure_ascii=False).encode()
    if fault is Fault.SERVER_ERROR:
        return 500, json_type, json.dumps({"error": {"message": "internal error"}}).encode()
    if fault is Fault.BROKEN_JSON:
        return 200, json_type, b'{"id": "x", "status": "video_gen'
    if fault is Fault.LONE_SURROGATE:
        return 200, json_type, b'{"id": "x", "status": "video_generating", "note": "\\ud800"}'
    if fault is Fault.NAN:
        return 200, json_type, b'{"id": "x", "status": "video_generating", "progress": NaN}'
    if fault is Fault.HUGE:
        return (
            200,
            json_type,
            b'{"id": "x", "status": "video_generating", "pad": "'
            + (b"x" * 8 * 1024 * 1024)
            + b'"}',
        )
    return None  # SLOW: the delay is served by the route, the answer is normal


def file_token(task_id: str) -> str:
    """The name stem of a task's result files."""
    return hashlib.sha256(task_id.encode()).hexdigest()[:12]


def task_body(task: SimTask, status: str) -> dict[str, Any]:
    """A query answer shaped like QuickRouter's, for `task` at `status`."""
    if task.scenario is Scenario.DOC_EXAMPLE and status == "completed":
        return doc_example(task.task_id)
    short_id = task.task_id.partition(":")[2] or task.task_id  # the upstream may drop the prefix
    token = file_token(task.task_id)
    cdn = f"{task.files_url}/sim/files" if task.files_url else "https://cdn.example.invalid/sim"
    clip = f"{cdn}/{token}-clip.mp4"
    upscaled = f"{cdn}/{token}-4k.mp4"
    now_ms = int(time.time() * 1000)
    detail: dict[str, Any] = {
        "id": task.task_id,
        "req": {
            "model": task.model,
            "prompt": "simulated prompt",
            "enable_upsample": task.scenario is Scenario.SUCCESS,
        },
        "status": status,
        "running": status not in ("completed", *FAILURE_STATUSES),
        "created_at": int(task.created_wall * 1000),
        "enhanced_prompt": "A simulated, enhanced prompt.",
    }
    body: dict[str, Any] = {
        "id": short_id,
        "status": status,
        "video_url": None,
        "enhanced_prompt": "A simulated, enhanced prompt.",
        "status_update_time": now_ms,
        "detail": detail,
    }
    past_generation = status in {
        "video_generation_completed",
        "video_upsampling",
        "video_upsampling_completed",
        "video_upsampling_failed",
        "completed",
    }
    if past_generation:
        detail["video_url"] = clip
    if task.scenario is Scenario.PREVIEW_URL and status in {
        "video_generating",
        "video_generation_completed",
    }:
        body["video_url"] = clip + "?preview=1"
    if status == "completed":
        detail["completed_at"] = now_ms
        if task.scenario is Scenario.HOSTILE_RESULT:
            body["video_url"] = "javascript:alert(document.domain)"
            detail["video_url"] = "file:///etc/passwd"
            detail["upsample_video_url"] = upscaled
            body["enhanced_prompt"] = "an enhanced prompt with a lone surrogate: \ud800"
        elif task.scenario is Scenario.SUCCESS:
            detail["upsample_video_url"] = upscaled
            body["video_url"] = upscaled
        else:
            body["video_url"] = clip
    elif status == "video_generation_failed":
        detail["video_generation_error"] = UNSAFE_PROMPT
    elif status == "video_upsampling_failed":
        detail["upsample_error"] = "upsampling failed: MEDIA_GENERATION_STATUS_FAILED"
    elif status == "failed":
        detail["error_message"] = "generation failed: quota exhausted upstream"
        body["fail_reason"] = "generation failed"
    elif status == "error":
        body["error"] = {"code": "upstream_error", "message": "the model backend errored"}
    return body


def doc_example(task_id: str = "veo3.1-fast:1770350082-trii1OXZc3") -> dict[str, Any]:
    """The example answer of QuickRouter's documentation page (`completed`, stale errors)."""
    detail = {
        "id": task_id,
        "req": {
            "model": "veo3.1-fast",
            "images": ["https://filesystem.site/cdn/20250702/w8AauvxxPhYoqqkFWdMippJpb9zBxN.png"],
            "prompt": "make animate",
            "aspect_ratio": "16:9",
            "enhance_prompt": True,
            "enable_upsample": True,
        },
        "status": "completed",
        "running": False,
        "video_url": "https://pro.filesystem.site/cdn/20260206/9ddbd3bdc67f75a02f766363ebf8eb.mp4",
        "created_at": 1770350082099,
        "error_sleep": 5000,
        "max_retries": 3,
        "retry_count": 3,
        "completed_at": 1770350328994,
        "error_message": RECAPTCHA_403,
        "enhanced_prompt": (
            "Create a vibrant and whimsical animation that features a joyful scene of colorful "
            "animals playing together in a sunny meadow, surrounded by blooming flowers and "
            "butterflies fluttering by."
        ),
        "upsample_status": "MEDIA_GENERATION_STATUS_SUCCESSFUL",
        "status_update_time": 1770350329098,
        "upsample_video_url": (
            "https://pro.filesystem.site/cdn/20260206/1b50395bad4c6c7bc22e6ada144951.mp4"
        ),
        "needs_safe_enhancement": True,
        "video_generation_error": UNSAFE_PROMPT,
        "video_generation_status": "MEDIA_GENERATION_STATUS_SUCCESSFUL",
    }
    return {
        "id": task_id,
        "detail": detail,
        "status": "completed",
        "video_url": "https://pro.filesystem.site/cdn/20260206/1b50395bad4c6c7bc22e6ada144951.mp4",
        "status_update_time": 1770350329098,
    }
