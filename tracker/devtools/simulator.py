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
import json
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tracker.devtools.scenarios import (
    STEPS,
    Fault,
    Files,
    Scenario,
    SimTask,
    fault_answer,
    file_bytes,
    file_token,
    step_starts,
    task_body,
)

# The answers kept per task (`SimTask.answers`): a benchmark's task is polled a few dozen
# times, and a demo's task left running must not grow without end.
ANSWERS_KEPT = 100


@dataclass
class Simulator:
    """The simulator's state; `app()` serves it."""

    api_key: str = "sim-key"
    speed: float = 1.0
    slow_delay: float = 5.0
    default_duration: float = 30.0
    url: str = ""  # where it is served, once it is
    tasks: dict[str, SimTask] = field(default_factory=dict)
    # Keys accepted besides `api_key` (each client's own, in tests), or any key at all
    # (`qrtracker up --simulate`, so a client's own made-up key works in the demo).
    keys: set[str] = field(default_factory=set)
    any_key: bool = False
    creates: int = 0  # how many tasks `POST /v1/video/create` made
    create_delay: float = 0.0  # seconds between making a task and answering the create
    outage_fault: Fault | None = None  # every query answers this fault until `outage_until`
    outage_until: float = 0.0
    held: int = 0  # slow answers being held now (a poll in flight at the tracker)
    # Whether every task's result links point at this simulator's own files (`qrtracker up`
    # and `simulate`); else only those scripted with `files`, the rest made-up CDN links.
    serve_files: bool = False
    by_token: dict[str, SimTask] = field(default_factory=dict)  # file name stem -> its task
    file_requests: dict[str, int] = field(default_factory=dict)  # file name -> GETs
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _key(self, request: Request) -> str | None:
        """The request's bearer key, if the simulator accepts it."""
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            return None
        if not self.any_key and key != self.api_key and key not in self.keys:
            return None
        return key

    def now(self) -> float:
        return time.monotonic() * self.speed

    def script(
        self,
        task_id: str | None = None,
        scenario: Scenario | str = Scenario.SUCCESS,
        duration: float | None = None,
        faults: list[Fault] | list[str] | None = None,
        model: str = "veo3.1-fast",
        owner: str | None = None,
        files: Files | dict[str, Any] | None = None,
    ) -> SimTask:
        """Script a task (a new id if none is given); `duration` is in simulated seconds.
        With `owner`, only that key sees it (as QuickRouter shows a task only to its creator's
        key); without, every accepted key does. `files`: how its result files are served
        (`scenarios.Files`), at this simulator's address once it has one."""
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
            starts=step_starts(STEPS[Scenario(scenario)][0], task_id),
            owner=owner,
            files=Files.of(files),
            files_url=self.url if files is not None or self.serve_files else "",
        )
        with self._lock:
            self.tasks[task_id] = task
            self.by_token[file_token(task_id)] = task
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
        faulty = fault_answer(fault) if fault is not None else None
        if faulty is not None:
            return faulty
        if task.scenario is Scenario.UNAUTHORIZED:
            return _unauthorized()
        body = self.body(task)
        if len(task.answers) < ANSWERS_KEPT:
            task.answers.append((self.now() - task.created_clock, str(body["status"])))
        if body["status"] == STEPS[task.scenario][1] and task.final_seen_at is None:
            task.final_seen_at = time.time()
        return 200, {"content-type": "application/json"}, json.dumps(body).encode()

    def body(self, task: SimTask) -> dict[str, Any]:
        steps, final = STEPS[task.scenario]
        elapsed = self.now() - task.created_clock
        if task.duration <= 0 or elapsed >= task.duration:
            status, start = final, 1.0
        else:
            index = bisect.bisect_right(task.starts, elapsed / task.duration) - 1
            status, start = steps[index], task.starts[index]
        body = task_body(task, status)
        if "detail" in body and task.scenario is not Scenario.DOC_EXAMPLE:
            # When this status began, in wall-clock ms, as QuickRouter reports it.
            started = task.created_wall + start * task.duration / task.speed
            body["status_update_time"] = int(started * 1000)
        return body

    def app(self) -> Starlette:
        """The ASGI app: QuickRouter's query and create routes, plus `/sim/…` to script tasks."""
        return Starlette(
            routes=[
                Route("/sim/files/{name}", self._on_result_file, methods=["GET"]),
                Route("/v1/video/query", self._on_query, methods=["GET"]),
                Route("/v1/video/create", self._on_create, methods=["POST"]),
                Route("/sim/tasks", self._on_script, methods=["POST"]),
                Route("/sim/tasks", self._on_listing, methods=["GET"]),
                Route("/sim/keys", self._on_add_key, methods=["POST"]),
                Route("/sim/tasks/{task_id:path}", self._on_describe, methods=["GET"]),
            ]
        )

    async def _on_query(self, request: Request) -> Response:
        key = self._key(request)
        if key is None:
            return _response(_unauthorized())
        task_id = request.query_params.get("id", "")
        task = self.tasks.get(task_id)
        if task is None or task.owner not in {None, key}:
            body = {
                "status": "error",
                "id": task_id,
                "error": {"message": "task not found", "type": "new_api_error"},
            }
            return JSONResponse(body)
        fault = self.arrive(task)
        if fault is Fault.SLOW:
            with self._lock:
                self.held += 1
            try:
                await asyncio.sleep(self.slow_delay)
            finally:
                with self._lock:
                    self.held -= 1
        return _response(self.answer(task, fault))

    async def _on_create(self, request: Request) -> Response:
        key = self._key(request)
        if key is None:
            return _response(_unauthorized())
        body = await _json_object(request)
        spec = body.get("simulate") if isinstance(body.get("simulate"), dict) else {}
        assert isinstance(spec, dict)
        model = str(body.get("model") or "veo3.1-fast")
        if not MODEL.match(model):  # as QuickRouter refuses a model it does not serve
            error = {"message": f"model {model!r} is not available", "type": "new_api_error"}
            return JSONResponse({"error": error}, status_code=400)
        task = self.script(
            scenario=spec.get("scenario", Scenario.SUCCESS),
            duration=spec.get("duration"),
            model=model,
            owner=key,
        )
        with self._lock:
            self.creates += 1
        await asyncio.sleep(self.create_delay)
        return JSONResponse(
            {
                "id": task.task_id,
                "status": "pending",
                "status_update_time": int(time.time() * 1000),
            }
        )

    async def _on_script(self, request: Request) -> Response:
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
                    owner=spec.get("owner"),
                    files=spec.get("files"),
                )
                for spec in specs
            ]
        except (ValueError, AttributeError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        if "tasks" in body:
            return JSONResponse({"tasks": [_describe(t) for t in tasks]}, status_code=201)
        return JSONResponse(_describe(tasks[0]), status_code=201)

    async def _on_add_key(self, request: Request) -> Response:
        body = await _json_object(request)
        with self._lock:
            self.keys.add(str(body["key"]))
        return Response(status_code=204)

    async def _on_listing(self, request: Request) -> Response:
        return JSONResponse({"tasks": [_describe(t) for t in list(self.tasks.values())]})

    async def _on_describe(self, request: Request) -> Response:
        task = self.tasks.get(request.path_params["task_id"])
        if task is None:
            return JSONResponse({"error": "unknown task"}, status_code=404)
        return JSONResponse(_describe(task))

    async def _on_result_file(self, request: Request) -> Response:
        name = request.path_params["name"]
        task = self.by_token.get(name.partition("-")[0])
        if task is None:
            return JSONResponse({"error": "no such file"}, status_code=404)
        spec = task.files
        with self._lock:
            index = self.file_requests.get(name, 0)
            self.file_requests[name] = index + 1
        if spec.gone_after is not None and time.time() > task.final_at + spec.gone_after:
            return JSONResponse({"error": "the link has expired"}, status_code=404)
        end = spec.cut_at if spec.cut_at is not None and index < spec.cuts else spec.size
        return StreamingResponse(
            _paced(file_bytes(name, end), spec.rate),
            headers={"content-length": str(spec.announce or spec.size)},
            media_type=spec.content_type,
        )


async def _paced(chunks: Iterator[bytes], rate: float) -> AsyncIterator[bytes]:
    """`chunks` at `rate` bytes a second (0: as fast as they are taken)."""
    for chunk in chunks:
        yield chunk
        await asyncio.sleep(len(chunk) / rate if rate > 0 else 0)


def _describe(task: SimTask) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "scenario": str(task.scenario),
        "duration": task.duration,
        "faults": [str(f) for f in task.faults],
        "requests": task.requests,
        "final_at": task.final_at,
        "final_seen_at": task.final_seen_at,
        "answers": task.answers,
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


# The model names the simulator serves: any that could prefix a task id.
MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _unauthorized() -> tuple[int, dict[str, str], bytes]:
    body = {"error": {"message": "invalid token", "type": "new_api_error"}}
    return 401, {"content-type": "application/json"}, json.dumps(body).encode()
