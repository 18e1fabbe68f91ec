"""A soak: 2,000 tasks of mixed outcomes, random upstream and receiver faults, a worker killed."""

from __future__ import annotations

import dataclasses
import random
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.audit import EXPECTED_STATE, Tracked, register_all, settled
from tests.support import WorkerProcess, create_client, wait_for
from tracker.devtools.receiver import Receiver
from tracker.devtools.simulator import Fault, Scenario, Simulator
from tracker.embedded_redis import EmbeddedRedis
from tracker.server import ServerThread
from tracker.settings import Settings

pytestmark = pytest.mark.slow

TASKS = 2000
SCENARIOS = {
    Scenario.SUCCESS: 40, Scenario.SUCCESS_NO_UPSCALE: 10, Scenario.PREVIEW_URL: 5,
    Scenario.DOC_EXAMPLE: 5, Scenario.FAIL_GENERATION: 5, Scenario.FAIL_UPSAMPLING: 5,
    Scenario.FAILED: 5, Scenario.ERROR: 5, Scenario.UNAUTHORIZED: 3, Scenario.NEVER_ENDS: 4,
    "unknown": 13,  # an id the simulator never saw
}  # fmt: skip
CHEAP_FAULTS = [Fault.RATE_LIMITED, Fault.RATE_LIMITED_EMPTY, Fault.RATE_LIMITED_NEW_API,
                Fault.SERVER_ERROR, Fault.BROKEN_JSON]  # fmt: skip


def plan(simulator: Simulator, receiver: Receiver, rng: random.Random) -> list[Tracked]:
    """Script each task upstream and at the receiver; return what each must end as."""
    names = list(SCENARIOS)
    weights = list(SCENARIOS.values())
    tracked = []
    for n in range(TASKS):
        scenario = rng.choices(names, weights)[0]
        faults: list[Fault] = []
        if rng.random() < 0.3:
            faults = rng.choices(CHEAP_FAULTS, k=rng.randint(1, 3))
        if rng.random() < 0.02:
            faults.insert(0, Fault.SLOW)
        if scenario == "unknown":
            task_id = f"veo3.1-fast:{int(time.time())}-unknown{n}"
        else:
            task_id = simulator.script(
                scenario=scenario, duration=rng.uniform(0.3, 2.0), faults=faults
            ).task_id
        path = f"/soak/{n}"
        roll = rng.random()
        if roll < 0.08:
            receiver.script(path, *[500] * 10)  # never accepts: dead after the schedule
        elif roll < 0.28:
            receiver.script(path, rng.choice([500, 503, 429, 302, 404]))  # fails once
        tracked.append(Tracked(task_id, "", path, EXPECTED_STATE[str(scenario)]))
    return tracked


@pytest.fixture
def own_parts(tmp_path: Path) -> Iterator[tuple[str, Receiver]]:
    """A Redis and a receiver of the soak's own: nothing another test left behind (a due entry,
    an origin's breaker, a scripted path) weighs on it, and it leaves nothing to later tests."""
    hooks = Receiver()
    with EmbeddedRedis(tmp_path / "redis") as server, ServerThread(hooks.app()) as thread:
        hooks.url = thread.url
        yield server.url, hooks


def test_soak_every_registered_task_is_accounted_for(
    settings: Settings,
    start_api: Callable[[Settings], httpx.Client],
    simulator: Simulator,
    own_parts: tuple[str, Receiver],
    start_worker: Callable[[Settings], WorkerProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    redis_url, receiver = own_parts
    client = create_client(redis_url)
    # The deadline outlasts the recovery of a killed worker's leases (job time-out + 5 s: 22 s
    # here) by more than a task takes to use up its scripted faults, so the kill delays tasks
    # without timing them out. (At 16 s, a task the victim held with a fault still ahead could
    # get that fault past its deadline and end timed out: a run of the suite saw 7 of 2,000.)
    # The breaker's intervals are compressed as much as the delivery schedule is: every path
    # shares the receiver's one origin, and its always-failing paths open it often; at the
    # shipped 10 s to 600 s against a schedule of seconds, most deliveries would end dead
    # waiting for it (by their window, on time).
    settings = dataclasses.replace(settings, redis_url=redis_url, poll_first_delay=0.1,
                                   poll_max_delay=0.4, poll_deadline=30.0, breaker_open=0.5,
                                   breaker_max_open=2.0)  # fmt: skip
    api = start_api(settings)
    victim = start_worker(settings)
    start_worker(settings)
    started = time.monotonic()
    tracked = register_all(api, client, receiver, plan(simulator, receiver, random.Random(7)))
    registered_in = time.monotonic() - started
    wait_for(lambda: len(receiver.received) >= TASKS // 3, 120, "a third of the webhooks")
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()
    start_worker(settings)
    result = settled(redis_url, receiver, tracked, 240, "every task to settle")
    elapsed = time.monotonic() - started
    table = result.table
    with capsys.disabled():
        print(
            f"\nsoak: {TASKS} tasks registered in {registered_in:.1f} s, "
            f"settled in {elapsed:.1f} s, one worker SIGKILLed and replaced"
        )
        print(result.report())
    assert sum(table.values()) == TASKS
    assert table["delivered"] + table["failed"] + table["timed_out"] + table["dead"] == TASKS
    assert all(table[k] > 0 for k in ("delivered", "failed", "timed_out", "dead"))
    assert result.mismatched == []
    assert result.duplicate_event_ids == []
