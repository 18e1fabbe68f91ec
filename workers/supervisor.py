"""Running the worker: it outlives Redis outages, and stops gracefully on a signal.

arq's worker retries most Redis commands (see `tracker.store.connection.redis_settings`),
but a connection lost in the middle of its WATCH/MULTI bookkeeping ends its main loop. The
supervisor then closes that worker and starts a fresh one in the same process, with a growing
pause, until Redis answers again: no person, and no process restart, needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from arq.worker import Worker
from redis.exceptions import RedisError

from tracker.settings import Settings
from workers.worker import create_worker

log = logging.getLogger("tracker.worker")


class Stop:
    """Set once, by SIGINT or SIGTERM (or by hand), remembering which signal it was."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.signal = signal.SIGTERM

    def set(self, sig: signal.Signals = signal.SIGTERM) -> None:
        self.signal = sig
        self.event.set()

    @classmethod
    def on_signals(cls) -> Stop:
        """A Stop that SIGINT and SIGTERM set, in the running event loop."""
        stop = cls()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set, sig)
        return stop


async def supervise(settings: Settings, stop: Stop) -> None:
    """Run workers one after the other until `stop` is set; then drain the current one.

    Draining: the poller and the dispatcher stop claiming, let polls and attempts in flight
    finish for up to `TRACKER_SHUTDOWN_GRACE`, and hand the rest back to their due sets.
    """
    current: Worker | None = None

    async def drain_on_stop() -> None:
        await stop.event.wait()
        if current is not None:
            for name in ("poller", "dispatcher"):
                loop = current.ctx.get(name)
                if loop is not None:
                    loop.stop_claiming()
            current.handle_sig_wait_for_completion(stop.signal)

    drainer = asyncio.create_task(drain_on_stop())
    pause = 0.5
    while not stop.event.is_set():
        current = create_worker(settings, handle_signals=False)
        try:
            await current.async_run()
        except asyncio.CancelledError:
            pass  # the graceful shutdown ends the main loop this way
        except (RedisError, OSError) as exc:
            log.warning(
                "worker loop stopped on Redis (%s: %s); starting again", type(exc).__name__, exc
            )
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            # Room for arq's drain and then the poller's, each up to the grace period.
            await asyncio.wait_for(current.close(), 2 * settings.shutdown_grace + 5)
        if not stop.event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.event.wait(), pause)
            pause = min(pause * 2, 10.0)
    drainer.cancel()
