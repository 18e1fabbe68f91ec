"""`qrtracker worker`: an arq worker that outlives Redis outages, and stops gracefully.

arq's worker retries most Redis commands (see `tracker.queue.redis_settings`), but a connection
lost in the middle of its WATCH/MULTI bookkeeping ends its main loop. The supervisor then
closes that worker and starts a fresh one in the same process, with a growing pause, until
Redis answers again: no person, and no process restart, needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from arq.worker import Worker
from redis.exceptions import RedisError

from tracker.settings import Settings
from workers.settings import create_worker

log = logging.getLogger("tracker.worker")


async def supervise(settings: Settings) -> None:
    """Run workers one after the other until SIGTERM or SIGINT; each signal drains the current.

    On a signal the worker stops taking jobs, lets running ones finish for up to
    `TRACKER_SHUTDOWN_GRACE`, and hands the rest back (arq's graceful shutdown).
    """
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    current: Worker | None = None

    def on_signal(sig: signal.Signals) -> None:
        stopping.set()
        if current is not None:
            current.handle_sig_wait_for_completion(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    pause = 0.5
    while not stopping.is_set():
        current = create_worker(settings, handle_signals=False)
        try:
            await current.async_run()
        except asyncio.CancelledError:
            pass  # the graceful shutdown ends the main loop this way
        except (RedisError, OSError) as exc:
            log.warning("worker loop lost Redis (%s); starting again", type(exc).__name__)
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await asyncio.wait_for(current.close(), settings.shutdown_grace)
        if not stopping.is_set():
            await asyncio.sleep(pause)
            pause = min(pause * 2, 10.0)
