"""Moving a Redis kept by the version before hash-tagged keys (`qrt:…`) to this layout: the
processes refuse such a Redis with the way out, `qrtracker redis migrate` renames its keys in
place, and the tracker goes on with every record: a client's key, an ended task, a task still
tracked (issue 26)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis
from click.testing import CliRunner
from redis.asyncio import Redis

from tests.support import Trip, WorkerProcess, wait_for
from tracker.cli import main
from tracker.settings import Settings
from tracker.store import keys, layout


def back_to_the_old_layout(redis_url: str) -> int:
    """What a Redis kept by the earlier version holds: every key named `qrt:…`."""
    with redis.Redis.from_url(redis_url) as conn:
        names = list(conn.scan_iter(match=keys.PREFIX + "*"))
        for name in names:
            conn.rename(name, layout.OLD_PREFIX + name.decode().removeprefix(keys.PREFIX))
    return len(names)


def test_an_old_layout_is_refused_then_migrated_and_served(
    trip: Trip,
    settings: Settings,
    redis_url: str,
    start_worker: Callable[[Settings], WorkerProcess],
) -> None:
    worker = start_worker(settings)
    ended, _, _ = trip.round_trip(scenario="success")
    running = trip.script(duration=4.0)
    trip.register(running.task_id, suffix="/running")
    wait_for(lambda: trip.view(running.task_id)["polls"] > 0, 20, "a poll of the running task")
    worker.stop()
    assert back_to_the_old_layout(redis_url) > 10

    refused = CliRunner().invoke(main, ["clients", "list"], env={"REDIS_URL": redis_url})
    assert refused.exit_code != 0
    assert "qrtracker redis migrate" in refused.output  # said, not a traceback

    migrated = CliRunner().invoke(main, ["redis", "migrate"], env={"REDIS_URL": redis_url})
    assert migrated.exit_code == 0, migrated.output
    assert "migrated:" in migrated.output
    with redis.Redis.from_url(redis_url) as conn:
        assert not list(conn.scan_iter(match=layout.OLD_PREFIX + "*"))

    start_worker(settings)
    assert trip.view(ended.task_id)["state"] == "completed"  # the same client key, read again
    trip.settled(running.task_id)
    assert [h.json()["type"] for h in trip.receiver.accepted(trip.path + "/running")] == [
        "video.completed"
    ]


def test_a_migration_cut_short_goes_on_where_it_stopped(redis_url: str) -> None:
    async def run() -> None:
        conn = Redis.from_url(redis_url)
        try:
            for n in range(1200):
                await conn.set(f"{layout.OLD_PREFIX}task:t{n}", n, ex=3600)
            await conn.set(layout.OLD_PREFIX + "identity", "ep_old initialised 1.0")
            assert await layout.outdated(conn)

            first = await layout.migrate(conn, limit=500)
            assert 500 <= first < 1200
            assert await layout.outdated(conn)  # the markers go last: still told as old

            rest = await layout.migrate(conn)
            assert first + rest == 1201
            assert not await layout.outdated(conn)
            assert await conn.get(keys.HOME.task("t7")) == b"7"
            assert 3500 < await conn.ttl(keys.HOME.task("t7")) <= 3600  # its lifetime kept
            assert await conn.get(keys.HOME.IDENTITY) == b"ep_old initialised 1.0"
            assert await layout.migrate(conn) == 0  # again: nothing left to move
        finally:
            await conn.aclose()

    asyncio.run(run())
