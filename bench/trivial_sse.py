"""The throughput ceiling of `bench events`: an sse-starlette app with no Redis and no auth,
making its events in memory (`GET /stream?n=N`: N events of the tracker's size, at once).
Run by the benchmark as `uvicorn bench.trivial_sse:app`."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ITEM = {"type": "video.completed", "body": "x" * 1000, "headers": {"webhook-id": "msg_x"}}


async def stream(request: Request) -> Response:
    count = int(request.query_params.get("n", "100"))

    async def events() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(data="{}", id="0-0", event="ready")
        for n in range(count):
            cursor = f"{int(time.time() * 1000)}-{n}"
            yield ServerSentEvent(data=json.dumps(ITEM), id=cursor, event="video.completed")

    return EventSourceResponse(events())


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/stream", stream), Route("/healthz", healthz)])
