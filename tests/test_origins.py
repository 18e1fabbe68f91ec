"""Fair delivery in one process: an origin's slots, its circuit breaker, one deadline per
attempt, and the end of a delivery its origin kept waiting too long."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable

import pytest

from tests.support import HOOK, TASK, Parts, Peers, queued, register, run
from tracker.core import origins
from tracker.core.origins import Circuit, Gate, origin_of
from tracker.core.records import DeliveryState
from tracker.net.callbacks import Callbacks
from tracker.settings import Settings
from tracker.store import keys
from workers.context import WorkerContext
from workers.deliver import Prepared, Sent, attempt_delivery, breaker, conclude, prepare, send
from workers.poll import poll_task

# -- the pure rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "origin"),
    [("https://Hooks.Example.com/a?b", "https://hooks.example.com:443"),
     ("http://hooks.example.com/", "http://hooks.example.com:80"),
     ("http://hooks.example.com:8080/x", "http://hooks.example.com:8080"),
     ("HTTPS://[2001:db8::1]:9443/", "https://[2001:db8::1]:9443")],
)  # fmt: skip
def test_an_origin_is_scheme_host_and_port(url: str, origin: str) -> None:
    assert origin_of(url) == origin


@pytest.mark.parametrize(
    ("status", "failed"), [(None, True), (500, True), (503, True), (200, False), (404, False),
                           (410, False), (429, False), (301, False)],
)  # fmt: skip
def test_only_no_answer_or_a_5xx_counts_against_an_origin(status: int | None, failed: bool) -> None:
    assert origins.is_failure(status) is failed


def test_the_gate_spreads_waits_and_names_the_probe() -> None:
    assert origins.wait_until(1, 0.0, 100.0, 0.5) == Gate(True)
    assert origins.wait_until(2, 0.0, 100.0, 0.5) == Gate(True, probe=True)
    open_gate = origins.wait_until(0, 130.0, 100.0, 0.5)
    assert not open_gate.admitted and 130.0 <= open_gate.retry_at <= 130.0 + origins.BUSY_RETRY
    busy = origins.wait_until(-1, 0.0, 100.0, 0.99)
    assert 100.0 + origins.BUSY_RETRY <= busy.retry_at < 100.0 + 2 * origins.BUSY_RETRY
    assert origins.circuit(0.0, 5.0) is Circuit.CLOSED
    assert origins.circuit(9.0, 5.0) is Circuit.OPEN
    assert origins.circuit(4.0, 5.0) is Circuit.HALF_OPEN


# -- against the embedded Redis --------------------------------------------------------------


async def ended_task(ctx: WorkerContext, peers: Peers, parts: Parts) -> str:
    """Register the test task, let a poll end it; the id of its one delivery."""
    await register(parts)
    peers.upstream[TASK] = {"status": "completed", "video_url": "https://cdn.test/v.mp4"}
    await poll_task(ctx, ctx["store"].shards[0], TASK, await ctx["store"].shards[0].tasks.get(TASK))
    (delivery_id,) = await queued(ctx)
    return delivery_id


def test_a_busy_origin_puts_a_delivery_off_without_an_attempt(settings: Settings) -> None:
    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        delivery_id = await ended_task(ctx, peers, parts)
        now = time.time()
        for other in ("a", "b"):  # the origin's two slots, taken by attempts elsewhere
            answer, _ = (
                await ctx["store"]
                .shards[0]
                .origins.acquire(parts.client.id, origin_of(HOOK), other, now, now + 30, 2, 50)
            )
            assert answer == 1
        delay = await attempt_delivery(ctx, ctx["store"].shards[0], delivery_id)
        assert delay is not None and origins.BUSY_RETRY <= delay <= 2 * origins.BUSY_RETRY
        assert peers.posts == []
        found = await ctx["store"].shards[0].deliveries.get(delivery_id)
        assert found is not None and (found.state, found.attempts) == (DeliveryState.PENDING, 0)
        due = await ctx["redis"].zscore(keys.HOME.DUE_DELIVERIES, delivery_id)
        assert due == pytest.approx(found.next_attempt_at) and due > now  # not overdue

    run(dataclasses.replace(settings, delivery_per_origin=2), body)


def test_the_breaker_opens_probes_and_closes(settings: Settings) -> None:
    tight = dataclasses.replace(
        settings, breaker_failures=2, breaker_open=0.3, delivery_schedule=(0.01,) * 8
    )

    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        store, origin = ctx["store"], origin_of(HOOK)
        delivery_id = await ended_task(ctx, peers, parts)
        peers.receiver_status = 503
        for _ in range(2):
            await attempt_delivery(ctx, ctx["store"].shards[0], delivery_id)
        state = (await store.shards[0].origins.states(parts.client.id, [origin], time.time()))[
            origin
        ]
        assert (state.circuit, state.failures) == (Circuit.OPEN, 2)
        delay = await attempt_delivery(
            ctx, ctx["store"].shards[0], delivery_id
        )  # open: no POST, no attempt
        assert len(peers.posts) == 2 and delay is not None and delay >= 0.2
        found = await store.shards[0].deliveries.get(delivery_id)
        assert found is not None and found.attempts == 2

        await wait_past(state.open_until)
        await attempt_delivery(
            ctx, ctx["store"].shards[0], delivery_id
        )  # the probe; it fails: open twice as long
        state = (await store.shards[0].origins.states(parts.client.id, [origin], time.time()))[
            origin
        ]
        assert state.circuit is Circuit.OPEN and len(peers.posts) == 3
        assert state.open_until - time.time() > 0.45

        await wait_past(state.open_until)
        peers.receiver_status = 204
        assert (
            await attempt_delivery(ctx, ctx["store"].shards[0], delivery_id) is None
        )  # the probe gets through
        state = (await store.shards[0].origins.states(parts.client.id, [origin], time.time()))[
            origin
        ]
        assert (state.circuit, state.failures) == (Circuit.CLOSED, 0)
        found = await store.shards[0].deliveries.get(delivery_id)
        assert found is not None and found.state is DeliveryState.DELIVERED

    run(tight, body)


async def wait_past(moment: float) -> None:
    deadline = time.monotonic() + 10
    while time.time() <= moment:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


def test_a_delivery_its_origin_kept_waiting_past_its_schedule_ends_dead(
    settings: Settings,
) -> None:
    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        delivery_id = await ended_task(ctx, peers, parts)
        old = time.time() - settings.delivery_window - 1
        await ctx["redis"].hset(keys.HOME.delivery(delivery_id), "created_at", repr(old))
        assert await attempt_delivery(ctx, ctx["store"].shards[0], delivery_id) is None
        found = await ctx["store"].shards[0].deliveries.get(delivery_id)
        assert found is not None and found.state is DeliveryState.DEAD
        (attempt,) = await ctx["store"].shards[0].deliveries.attempts(delivery_id)
        assert attempt.status_code is None and "unavailable" in (attempt.error or "")
        assert peers.posts == []

    run(settings, body)


def test_a_delivery_behind_an_origin_that_stays_open_is_claimed_to_end_when_its_window_does(
    settings: Settings,
) -> None:
    """The claim never puts a delivery off past its window (the breaker may stay open for
    up to `breaker_max_open`, far longer): once its window is over it is claimed, without a
    slot, and ends dead with no POST."""
    stays_open = dataclasses.replace(settings, breaker_open=600.0, breaker_max_open=600.0)

    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        store = ctx["store"]
        delivery_id = await ended_task(ctx, peers, parts)
        now = time.time()
        for n in range(stays_open.breaker_failures):  # the origin opens for 600 s
            await store.shards[0].origins.release(
                parts.client.id, origin_of(HOOK), f"elsewhere{n}", failed=True, now=now,
                breaker=breaker(stays_open),
            )  # fmt: skip
        created = (await store.shards[0].deliveries.get(delivery_id)).created_at  # type: ignore[union-attr]
        expires = created + stays_open.delivery_window

        def claim(at: float) -> Awaitable[tuple[list[tuple[str, str]], float | None]]:
            return store.shards[0].deliveries.claim_due(
                at, 10, at + 35, slots=10, scan=100, window=stays_open.delivery_window,
                per_client=50,
            )  # fmt: skip

        assert await claim(now) == ([], pytest.approx(expires))  # put off to its window's end
        # Its window over (moved back rather than waited for: the window is 35 s and more).
        old = time.time() - stays_open.delivery_window - 1
        await ctx["redis"].hset(keys.HOME.delivery(delivery_id), "created_at", repr(old))
        claimed, _ = await claim(expires)
        assert claimed == [(delivery_id, "plain")]  # claimed, without a slot
        assert (
            await attempt_delivery(ctx, ctx["store"].shards[0], delivery_id, claimed="plain")
            is None
        )
        found = await store.shards[0].deliveries.get(delivery_id)
        assert found is not None and found.state is DeliveryState.DEAD
        assert peers.posts == [] and await queued(ctx) == []

    run(stays_open, body)


def test_one_clients_failures_never_open_the_origin_for_another(settings: Settings) -> None:
    """Clients that share a callback origin (a relay) have a breaker and slots each."""

    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        store, origin, now = ctx["store"], origin_of(HOOK), time.time()
        other, _ = await store.clients.create("other", now)
        for n in range(settings.breaker_failures):
            await store.shards[0].origins.release(
                other.id, origin, f"theirs{n}", failed=True, now=now, breaker=breaker(settings)
            )
        states = await store.shards[0].origins.states(other.id, [origin], now)
        assert states[origin].circuit is Circuit.OPEN
        mine = await store.shards[0].origins.states(parts.client.id, [origin], now)
        assert (mine[origin].circuit, mine[origin].failures) == (Circuit.CLOSED, 0)
        delivery_id = await ended_task(ctx, peers, parts)
        assert await attempt_delivery(ctx, ctx["store"].shards[0], delivery_id) is None
        assert len(peers.posts) == 1  # sent at once, through its own closed breaker

    run(settings, body)


def test_slow_name_resolution_is_cut_off_by_the_attempts_deadline(settings: Settings) -> None:
    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        delivery_id = await ended_task(ctx, peers, parts)
        prepared = await prepare(ctx["store"].shards[0], delivery_id)
        assert isinstance(prepared, Prepared)

        async def slow_dns(host: str, port: int) -> list[str]:
            await asyncio.sleep(30)
            return ["93.184.215.14"]

        callbacks = Callbacks(allow_private=False, limit=1, resolver=slow_dns)
        try:
            sent = await send(callbacks, prepared, time_limit=0.3, clock=time.time)
        finally:
            await callbacks.aclose()
        assert sent.status_code is None and sent.error == "timeout"
        assert sent.ended - sent.started < 2
        assert peers.posts == []

    run(settings, body)


# -- one sender, forward-only states (issue 12) ------------------------------------------------


def test_a_stale_attempt_never_moves_a_delivery_back(settings: Settings) -> None:
    """A sender paused past its lease comes back with what it read: its late 500 must not
    turn `delivered` back into `pending`, nor append to the log out of order."""

    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        store = ctx["store"]
        delivery_id = await ended_task(ctx, peers, parts)
        paused = await prepare(store.shards[0], delivery_id)  # the first sender reads, then stalls
        assert paused is not None
        assert (
            await attempt_delivery(ctx, ctx["store"].shards[0], delivery_id) is None
        )  # another delivers
        late = Sent(time.time(), time.time(), 500)
        await conclude(
            store.shards[0], ctx["settings"], paused, late, 0.5
        )  # the paused one wakes up
        found = await store.shards[0].deliveries.get(delivery_id)
        assert found is not None and (found.state, found.attempts) == (DeliveryState.DELIVERED, 1)
        log = await store.shards[0].deliveries.attempts(delivery_id)
        assert [a.status_code for a in log] == [204]

    run(settings, body)


def test_redeliver_during_an_attempt_is_not_swallowed_by_it(settings: Settings) -> None:
    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        store = ctx["store"]
        delivery_id = await ended_task(ctx, peers, parts)
        in_flight = await prepare(store.shards[0], delivery_id)  # attempt 1 of round 0 is under way
        assert in_flight is not None
        task = await store.shards[0].tasks.get(TASK)
        subs = await store.shards[0].tasks.subscriptions_of(task)
        assert task is not None
        (was,) = await store.shards[0].deliveries.redeliver(task, subs, time.time())
        assert was.state is DeliveryState.PENDING  # the answer says: it was in flight
        await conclude(
            store.shards[0], ctx["settings"], in_flight, Sent(time.time(), time.time(), 204), 0.5
        )
        found = await store.shards[0].deliveries.get(delivery_id)
        assert found is not None
        assert (found.state, found.attempts, found.round) == (DeliveryState.PENDING, 0, 1)
        assert delivery_id in await queued(ctx)  # due at once: the redeliver's own attempt
        assert await attempt_delivery(ctx, ctx["store"].shards[0], delivery_id) is None
        found = await store.shards[0].deliveries.get(delivery_id)
        assert found is not None and found.state is DeliveryState.DELIVERED

    run(settings, body)


def test_registering_again_after_a_410_starts_a_live_delivery_with_no_old_expiry(
    settings: Settings,
) -> None:
    short = dataclasses.replace(settings, retention=2.0)

    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        store, redis = ctx["store"], ctx["redis"]
        delivery_id = await ended_task(ctx, peers, parts)
        peers.receiver_status = 410
        await attempt_delivery(ctx, ctx["store"].shards[0], delivery_id)
        gone = await store.shards[0].deliveries.get(delivery_id)
        assert gone is not None and gone.state is DeliveryState.GONE
        assert await redis.ttl(keys.HOME.delivery(delivery_id)) > 0  # ended: it expires

        peers.receiver_status = 204
        await register(parts)  # the same client, task and callback: the disabled subscription
        again = await store.shards[0].deliveries.get(delivery_id)
        assert again is not None and (again.state, again.attempts) == (DeliveryState.PENDING, 0)
        assert await redis.ttl(keys.HOME.delivery(delivery_id)) == -1  # live again: no expiry
        assert await redis.exists(keys.HOME.delivery_attempts(delivery_id)) == 0  # a new log
        listed = await redis.lrange(keys.HOME.subscription_deliveries(again.subscription_id), 0, -1)
        assert listed == [delivery_id.encode()]
        assert delivery_id in await queued(ctx)
        assert await attempt_delivery(ctx, ctx["store"].shards[0], delivery_id) is None
        done = await store.shards[0].deliveries.get(delivery_id)
        assert done is not None and done.state is DeliveryState.DELIVERED

    run(short, body)
