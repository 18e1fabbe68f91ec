"""A QuickRouter stand-in: `GET /v1/video/query` walking scripted tasks through real statuses.

Each task follows a scenario (success, each failure, the doc's own example, …) over `duration`
seconds of a clock that runs `speed` times real time, and may answer its first requests with
faults (429s, 500s, slow or broken answers). Requests are counted per task. Scripts are set
from Python (`Simulator.script`) or over HTTP (`POST /sim/tasks`); `POST /v1/video/create`
starts a successful task like the real API does.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import json
import random
import secrets
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tracker.upstream import FAILURE_STATUSES


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


class Fault(StrEnum):
    RATE_LIMITED = "429"  # no Retry-After, plain JSON body
    RATE_LIMITED_RETRY_AFTER = "429_retry_after"  # Retry-After: 1
    RATE_LIMITED_EMPTY = "429_empty"  # no body at all
    RATE_LIMITED_NEW_API = "429_new_api"  # New API's error body
    SERVER_ERROR = "500"
    SLOW = "slow"  # answers after `Simulator.slow_delay` seconds
    BROKEN_JSON = "broken_json"


_PRE = ["pending", "prompt_enhancement_checking", "prompt_enhancing", "image_downloading"]
_STEPS: dict[Scenario, tuple[list[str], str]] = {
    Scenario.SUCCESS: (
        [
            *_PRE,
            "video_generating",
            "video_generation_completed",
            "video_upsampling",
            "video_upsampling_completed",
        ],
        "completed",
    ),
    Scenario.SUCCESS_NO_UPSCALE: (
        [*_PRE, "video_generating", "video_generation_completed"],
        "completed",
    ),
    Scenario.PREVIEW_URL: ([*_PRE, "video_generating", "video_generation_completed"], "completed"),
    Scenario.DOC_EXAMPLE: ([*_PRE, "video_generating", "video_upsampling"], "completed"),
    Scenario.FAIL_GENERATION: ([*_PRE, "video_generating"], "video_generation_failed"),
    Scenario.FAIL_UPSAMPLING: (
        [*_PRE, "video_generating", "video_generation_completed", "video_upsampling"],
        "video_upsampling_failed",
    ),
    Scenario.FAILED: ([*_PRE, "video_generating"], "failed"),
    Scenario.ERROR: ([*_PRE, "video_generating"], "error"),
    Scenario.UNAUTHORIZED: (["pending"], "pending"),
    Scenario.NEVER_ENDS: (["pending", "video_generating"], "video_generating"),
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

    @property
    def final_at(self) -> float:
        """Wall time at which the task turns final."""
        return self.created_wall + self.duration / self.speed


@dataclass
class Simulator:
    """The simulator's state; `app()` serves it."""

    api_key: str = "sim-key"
    speed: float = 1.0
    slow_delay: float = 5.0
    default_duration: float = 30.0
    url: str = ""  # where it is served, once it is
    tasks: dict[str, SimTask] = field(default_factory=dict)
    outage_fault: Fault | None = None  # every query answers this fault until `outage_until`
    outage_until: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        return time.monotonic() * self.speed

    def script(
        self,
        task_id: str | None = None,
        scenario: Scenario | str = Scenario.SUCCESS,
        duration: float | None = None,
        faults: list[Fault] | list[str] | None = None,
        model: str = "veo3.1-fast",
    ) -> SimTask:
        """Script a task (a new id if none is given); `duration` is in simulated seconds."""
        wall = time.time()
        if task_id is None:
            task_id = f"{model}:{int(wall)}-{secrets.token_urlsafe(8)}"
        task = SimTask(
            task_id=task_id,
            scenario=Scenario(scenario),
            duration=self.default_duration if duration is None else duration,
            faults=[Fault(f) for f in faults or []],
            model=model,
            created_wall=wall,
            created_clock=self.now(),
            speed=self.speed,
            starts=step_starts(_STEPS[Scenario(scenario)][0], task_id),
        )
        with self._lock:
            self.tasks[task_id] = task
        return task

    def outage(self, fault: Fault | str, seconds: float) -> None:
        """Answer every query with `fault` for the next `seconds` (real time)."""
        self.outage_fault = Fault(fault)
        self.outage_until = time.monotonic() + seconds

    def requests(self, task_id: str) -> int:
        task = self.tasks.get(task_id)
        return task.requests if task else 0

    def arrive(self, task: SimTask) -> Fault | None:
        """Count one request for `task`, on arrival; the fault to answer it with, if any."""
        with self._lock:
            index = task.requests
            task.requests += 1
        if self.outage_fault is not None and time.monotonic() < self.outage_until:
            return self.outage_fault
        return task.faults[index] if index < len(task.faults) else None

    def answer(self, task: SimTask, fault: Fault | None) -> tuple[int, dict[str, str], bytes]:
        """The status code, headers and body of one query for `task`."""
        faulty = _fault_answer(fault) if fault is not None else None
        if faulty is not None:
            return faulty
        if task.scenario is Scenario.UNAUTHORIZED:
            return _unauthorized()
        body = self.body(task)
        if body["status"] == _STEPS[task.scenario][1] and task.final_seen_at is None:
            task.final_seen_at = time.time()
        return 200, {"content-type": "application/json"}, json.dumps(body).encode()

    def body(self, task: SimTask) -> dict[str, Any]:
        steps, final = _STEPS[task.scenario]
        elapsed = self.now() - task.created_clock
        if task.duration <= 0 or elapsed >= task.duration:
            status, start = final, 1.0
        else:
            index = bisect.bisect_right(task.starts, elapsed / task.duration) - 1
            status, start = steps[index], task.starts[index]
        body = _task_body(task, status)
        if "detail" in body and task.scenario is not Scenario.DOC_EXAMPLE:
            # When this status began, in wall-clock ms, as QuickRouter reports it.
            started = task.created_wall + start * task.duration / task.speed
            body["status_update_time"] = int(started * 1000)
        return body

    def app(self) -> Starlette:
        """The ASGI app: QuickRouter's query and create routes, plus `/sim/…` to script tasks."""

        async def query(request: Request) -> Response:
            if request.headers.get("authorization") != f"Bearer {self.api_key}":
                return _response(_unauthorized())
            task_id = request.query_params.get("id", "")
            task = self.tasks.get(task_id)
            if task is None:
                body = {
                    "status": "error",
                    "id": task_id,
                    "error": {"message": "task not found", "type": "new_api_error"},
                }
                return JSONResponse(body)
            fault = self.arrive(task)
            if fault is Fault.SLOW:
                await asyncio.sleep(self.slow_delay)
            return _response(self.answer(task, fault))

        async def create(request: Request) -> Response:
            if request.headers.get("authorization") != f"Bearer {self.api_key}":
                return _response(_unauthorized())
            body = await _json_object(request)
            spec = body.get("simulate") if isinstance(body.get("simulate"), dict) else {}
            assert isinstance(spec, dict)
            task = self.script(
                scenario=spec.get("scenario", Scenario.SUCCESS),
                duration=spec.get("duration"),
                model=str(body.get("model") or "veo3.1-fast"),
            )
            return JSONResponse(
                {
                    "id": task.task_id,
                    "status": "pending",
                    "status_update_time": int(time.time() * 1000),
                }
            )

        async def script(request: Request) -> Response:
            body = await _json_object(request)
            # One task, or many at once as {"tasks": [...]} (benchmarks script thousands).
            specs = body["tasks"] if isinstance(body.get("tasks"), list) else [body]
            try:
                tasks = [
                    self.script(
                        task_id=spec.get("task_id"),
                        scenario=spec.get("scenario", Scenario.SUCCESS),
                        duration=spec.get("duration"),
                        faults=spec.get("faults"),
                        model=str(spec.get("model") or "veo3.1-fast"),
                    )
                    for spec in specs
                ]
            except (ValueError, AttributeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=422)
            if "tasks" in body:
                return JSONResponse({"tasks": [_describe(t) for t in tasks]}, status_code=201)
            return JSONResponse(_describe(tasks[0]), status_code=201)

        async def listing(request: Request) -> Response:
            return JSONResponse({"tasks": [_describe(t) for t in list(self.tasks.values())]})

        async def describe(request: Request) -> Response:
            task = self.tasks.get(request.path_params["task_id"])
            if task is None:
                return JSONResponse({"error": "unknown task"}, status_code=404)
            return JSONResponse(_describe(task))

        return Starlette(
            routes=[
                Route("/v1/video/query", query, methods=["GET"]),
                Route("/v1/video/create", create, methods=["POST"]),
                Route("/sim/tasks", script, methods=["POST"]),
                Route("/sim/tasks", listing, methods=["GET"]),
                Route("/sim/tasks/{task_id:path}", describe, methods=["GET"]),
            ]
        )


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


def _describe(task: SimTask) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "scenario": str(task.scenario),
        "duration": task.duration,
        "faults": [str(f) for f in task.faults],
        "requests": task.requests,
        "final_at": task.final_at,
        "final_seen_at": task.final_seen_at,
    }


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _response(answer: tuple[int, dict[str, str], bytes]) -> Response:
    status, headers, body = answer
    return Response(body, status_code=status, headers=headers)


def _unauthorized() -> tuple[int, dict[str, str], bytes]:
    body = {"error": {"message": "invalid token", "type": "new_api_error"}}
    return 401, {"content-type": "application/json"}, json.dumps(body).encode()


def _fault_answer(fault: Fault) -> tuple[int, dict[str, str], bytes] | None:
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
    return None  # SLOW: the delay is served by the route, the answer is normal


def _task_body(task: SimTask, status: str) -> dict[str, Any]:
    """A query answer shaped like QuickRouter's, for `task` at `status`."""
    if task.scenario is Scenario.DOC_EXAMPLE and status == "completed":
        return doc_example(task.task_id)
    short_id = task.task_id.partition(":")[2] or task.task_id  # the upstream may drop the prefix
    token = hashlib.sha256(task.task_id.encode()).hexdigest()[:12]
    clip = f"https://cdn.example.invalid/sim/{token}-clip.mp4"
    upscaled = f"https://cdn.example.invalid/sim/{token}-4k.mp4"
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
        if task.scenario is Scenario.SUCCESS:
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
