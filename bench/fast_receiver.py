"""A webhook receiver as fast as this machine allows (aiohttp), in a process of its own, so the
delivery benchmark's two contenders share it and nothing else: `python -m bench.fast_receiver
PORT`. POST anything: 204. GET /count: how many POSTs it has answered, and the wall-clock times
of the first and the latest (so a benchmark asks once in a while, rather than timing arrivals
by polling hard: on two cores a busy poller takes CPU from the sender it measures)."""

from __future__ import annotations

import sys
import time

from aiohttp import web


def app() -> web.Application:
    count, first, latest = 0, 0.0, 0.0

    async def accept(request: web.Request) -> web.Response:
        nonlocal count, first, latest
        await request.read()
        count += 1
        latest = time.time()
        first = first or latest
        return web.Response(status=204)

    async def total(request: web.Request) -> web.Response:
        return web.json_response({"count": count, "first": first, "latest": latest})

    async def reset(request: web.Request) -> web.Response:
        nonlocal count, first, latest
        count, first, latest = 0, 0.0, 0.0
        return web.Response(status=204)

    application = web.Application()
    application.router.add_get("/count", total)
    application.router.add_post("/reset", reset)
    application.router.add_post("/{path:.*}", accept)
    return application


if __name__ == "__main__":
    web.run_app(app(), host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
