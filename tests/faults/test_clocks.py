"""Workers whose own clocks are wrong by a minute: every decision that crosses processes is
made on Redis's clock (tracker.store.clock), so neither times tasks out early, claims what the
other holds, nor signs webhooks with a wrong timestamp."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

import httpx
import pytest

from tests.faults.audit import Tracked, register_all, settled
from tests.support import WorkerProcess
from tracker.devtools.receiver import Receiver
from tracker.devtools.simulator import Simulator
from tracker.settings import Settings

pytestmark = pytest.mark.slow


def test_workers_a_minute_ahead_and_behind_keep_to_the_fleets_clock(
    api: httpx.Client,
    client: dict[str, str],
    settings: Settings,
    simulator: Simulator,
    receiver: Receiver,
    start_worker: Callable[[Settings], WorkerProcess],
    redis_url: str,
) -> None:
    # Deadlines are set by the API (right clock) 20 s on; on its own clock the worker ahead
    # would find every task past it at its first poll.
    settings = dataclasses.replace(settings, poll_deadline=20.0)
    ahead = start_worker(dataclasses.replace(settings, clock_skew=60.0))
    behind = start_worker(dataclasses.replace(settings, clock_skew=-60.0))
    path = f"/hooks/{uuid.uuid4().hex}"
    scripted = [
        Tracked(simulator.script(duration=1.0).task_id, "", path, "completed") for _ in range(20)
    ]
    tracked = register_all(api, client, receiver, scripted)
    result = settled(redis_url, receiver, tracked, 60, "every task to settle")
    assert result.table == {"delivered": 20}, result.report()
    assert result.mismatched == []
    assert result.repeats == 0  # neither claimed what the other held
    for hit in receiver.at(path):  # signed on the fleet's clock, which the receiver shares
        assert abs(int(hit.headers["webhook-timestamp"]) - hit.at) < 5
    assert "off Redis's" in ahead.output() + behind.output()
