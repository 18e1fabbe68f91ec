"""Each callback origin's in-flight attempts and circuit breaker, shared by the fleet (the rules
are `tracker.core.origins`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from tracker.core import destinations
from tracker.core.origins import Circuit, circuit, origin_key
from tracker.store import keys, scripts


@dataclass(frozen=True)
class Breaker:
    threshold: int  # failures in a row that open an origin
    first_open: float  # seconds it stays open the first time
    max_open: float  # the longest it stays open after failed probes
    disable_after: float = 0.0  # failing without a break this long disables it (0: never)


@dataclass(frozen=True)
class OriginState:
    origin: str
    circuit: Circuit
    failures: int  # in a row
    open_until: float  # 0 when closed


class Origins:
    def __init__(self, redis: Redis, space: keys.Keyspace) -> None:
        self.redis = redis
        self.keys = space
        self._acquire = redis.register_script(scripts.ACQUIRE_SLOT)
        self._release = redis.register_script(scripts.RELEASE_SLOT)
        self._vacate = redis.register_script(scripts.VACATE_SLOT)

    async def forget_closed(self, now: float) -> int:
        """Drop the open-origin entries whose time has passed: an origin that failed and was
        never tried again would stay listed for ever."""
        return int(await self.redis.zremrangebyscore(self.keys.OPEN_ORIGINS, "-inf", now))

    async def opened(self, now: float) -> list[tuple[str, str, float]]:
        """The origins whose circuit is open now: (client id, origin, open until)."""
        found = await self.redis.zrangebyscore(self.keys.OPEN_ORIGINS, now, "+inf", withscores=True)
        return [(*member.decode().split(" ", 1), until) for member, until in found]

    async def close(self, client_id: str, origin: str) -> None:
        """Close the client's circuit for `origin` and enable it if it was disabled (its owner
        says the receiver is back: a recovery, an enable), so what waits for it may go."""
        name = origin_key(client_id, origin)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.origin_breaker(name))
            pipe.zrem(self.keys.OPEN_ORIGINS, f"{client_id} {origin}")
            pipe.hdel(self.keys.origin_figures(name), "disabled_at", "failing_since")
            pipe.expire(self.keys.origin_figures(name), 172800)
            await pipe.execute()

    async def vacate(self, delivery_id: str, *, probe: bool) -> None:
        """Give back a claimed slot unused (the delivery was not attempted after all)."""
        await self._vacate(
            keys=[self.keys.delivery(delivery_id)],
            args=[
                delivery_id, 1 if probe else 0, self.keys.origin_inflight("%s"),
                self.keys.origin_breaker("%s"), self.keys.client_sending("%s"),
            ],
        )  # fmt: skip

    async def acquire(
        self,
        client_id: str,
        origin: str,
        delivery_id: str,
        now: float,
        lease_until: float,
        slots: int,
        per_client: int,
    ) -> tuple[int, float]:
        """Take a slot of the client's origin (of `slots`) and one of the client's (of
        `per_client`) for one attempt: (1 or 2, 0) admitted (2: as the probe), (0, t) open
        until t, (-1, 0) busy."""
        name = origin_key(client_id, origin)
        answer, at = await self._acquire(
            keys=[
                self.keys.origin_inflight(name),
                self.keys.origin_breaker(name),
                self.keys.client_sending(client_id),
            ],
            args=[repr(now), delivery_id, repr(lease_until), slots, per_client],
        )
        return int(answer), float(at)

    async def release(
        self,
        client_id: str,
        origin: str,
        delivery_id: str,
        *,
        failed: bool,
        now: float,
        breaker: Breaker,
    ) -> bool:
        """Give the slot back and count the outcome; True if this failure opened the origin."""
        script_keys, args = release_call(
            self.keys, client_id, origin, delivery_id, failed, now, breaker
        )
        return bool(await self._release(keys=script_keys, args=args))

    async def states(
        self, client_id: str, origins: Sequence[str], now: float
    ) -> dict[str, OriginState]:
        """The breaker of each of the client's origins, in one round trip."""
        unique = list(dict.fromkeys(origins))
        async with self.redis.pipeline(transaction=False) as pipe:
            for origin in unique:
                name = origin_key(client_id, origin)
                pipe.hmget(self.keys.origin_breaker(name), "failures", "open_until")
            found = await pipe.execute()
        return {
            origin: _state(origin, failures, open_until, now)
            for origin, (failures, open_until) in zip(unique, found, strict=True)
        }

    async def figures(self, client_id: str, origin: str) -> dict[str, str]:
        """One destination's figures' hash, as text (`scripts.RELEASE_SLOT`)."""
        raw = await self.redis.hgetall(self.keys.origin_figures(origin_key(client_id, origin)))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def waiting(self, client_id: str, origin: str, limit: int) -> list[str]:
        """The ids of the newest `limit` deliveries waiting for one of the client's
        destinations."""
        name = origin_key(client_id, origin)
        found = await self.redis.zrevrange(self.keys.origin_waiting(name), 0, limit - 1)
        return [raw.decode() for raw in found]

    async def destinations(self, client_id: str, now: float, limit: int = 100) -> list[Destination]:
        """The client's destinations that had an attempt in the last two days (the `limit`
        most recent), with their breakers, figures and how many deliveries wait for each, in
        two round trips."""
        recent = await self.redis.zrevrange(self.keys.client_destinations(client_id), 0, limit - 1)
        origins = [o.decode() for o in recent]
        async with self.redis.pipeline(transaction=False) as pipe:
            for origin in origins:
                name = origin_key(client_id, origin)
                pipe.hmget(self.keys.origin_breaker(name), "failures", "open_until")
                pipe.hgetall(self.keys.origin_figures(name))
                pipe.zcard(self.keys.origin_waiting(name))
            found = await pipe.execute()
        result = []
        for n, origin in enumerate(origins):
            (failures, open_until), figures, waiting = found[3 * n : 3 * n + 3]
            state = _state(origin, failures, open_until, now)
            result.append(
                Destination(
                    origin, state, {k.decode(): v.decode() for k, v in figures.items()}, waiting
                )
            )
        return result


def _state(
    origin: str, failures: bytes | None, open_until: bytes | None, now: float
) -> OriginState:
    """An origin's breaker as read from its hash (`failures`, `open_until`)."""
    until = float(open_until or 0)
    return OriginState(origin, circuit(until, now), int(failures or 0), until)


@dataclass(frozen=True)
class Destination:
    """One of a client's callback origins: its breaker, and its figures' hash as text."""

    origin: str
    breaker: OriginState
    figures: dict[str, str]
    waiting: int = 0  # its pending deliveries

    def view(self, now: float) -> dict[str, Any]:
        """As the API and the dashboard show it (`tracker.core.destinations.view`)."""
        return destinations.view(
            self.origin, self.breaker.circuit, self.breaker.failures, self.figures, now,
            self.waiting,
        )  # fmt: skip


def release_call(
    space: keys.Keyspace,
    client_id: str,
    origin: str,
    delivery_id: str,
    failed: bool,
    now: float,
    breaker: Breaker,
    latency_ms: float = 0.0,
    failure: str = "",
) -> tuple[list[str], list[str | int]]:
    """RELEASE_SLOT's KEYS and ARGV (`Origins.release`, and `Store.conclude_attempt`); the
    attempt's `latency_ms` and what it `failure`d with count in the destination's figures."""
    name = origin_key(client_id, origin)
    return (
        [
            space.origin_inflight(name),
            space.origin_breaker(name),
            space.OPEN_ORIGINS,
            space.client_sending(client_id),
            space.origin_figures(name),
            space.client_destinations(client_id),
            space.OPERATIONS,
        ],
        [
            delivery_id,
            1 if failed else 0,
            repr(now),
            breaker.threshold,
            repr(breaker.first_open),
            repr(breaker.max_open),
            f"{client_id} {origin}",  # its name among the open ones, and on its breaker hash
            int(breaker.max_open * 4 + 3600),
            round(latency_ms),
            failure,
            origin,
            repr(breaker.disable_after),
        ],
    )
