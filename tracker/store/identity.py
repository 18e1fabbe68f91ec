"""The identity of the Redis the tracker keeps its records in: an epoch written when the
tracker first initialises that Redis, so that one which lost its data (FLUSHALL, a restart
without its files, a failover to an empty replica) is noticed instead of served as if nothing
had happened: every client would get 401, and every running task would vanish in silence.

Each process reads the epoch at its start, writing it first when Redis has none (a new Redis,
or one kept by a version of the tracker from before identities). From then on it checks that
the epoch is still there (at most once a second) before it serves or works. A process whose
Redis lost the epoch, or holds another that was not written deliberately, refuses until the
epoch is back (the Redis came back with its files) or an operator starts over on purpose
(`qrtracker redis start-over`, which writes a new epoch every process takes up).

With partitions (`TRACKER_PARTITIONS`, on a Redis Cluster each on the primary of its slot),
each partition holds the epoch too, so a shard that lost its data is noticed as the home's
would be: a process checks every partition's copy.

What it cannot tell: a Redis that lost its data while no process ran looks like a new one to
the first process that starts. Processes running at the time of the loss notice it.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from tracker import metrics
from tracker.errors import DataLost, LayoutOutdated, PartitionsChanged
from tracker.store import keys, layout
from tracker.store.clock import Clock

log = logging.getLogger("tracker.identity")

LOST = (
    "Redis lost the tracker's data (its epoch is gone): nothing is served until it is back, "
    "or the operator starts over (qrtracker redis start-over)"
)
OUTDATED = (
    "Redis holds the tracker's records in the key layout of an earlier version (keys "
    "beginning with qrt:): stop every API and worker, run `qrtracker redis migrate`, "
    "then start them again"
)
CHECK_EVERY = 1.0  # seconds between two reads of the epoch by one process
INITIALISED = "initialised"  # written by the first process to start on an empty Redis
STARTED_OVER = "started-over"  # written by `qrtracker redis start-over`


@dataclass(frozen=True)
class Epoch:
    id: str
    how: str  # INITIALISED or STARTED_OVER
    at: float
    # How many partitions the records are spread over (`keys.partition_of`): fixed with the
    # epoch. One for an epoch written before partitions were.
    partitions: int = 1

    def text(self) -> str:
        return f"{self.id} {self.how} {self.at!r} {self.partitions}"

    @classmethod
    def parse(cls, raw: bytes | str | None) -> Epoch | None:
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else raw
        parts = text.split(" ")
        try:
            count = int(parts[3]) if len(parts) > 3 else 1
            return cls(parts[0], parts[1], float(parts[2]), count)
        except (IndexError, ValueError):  # not what the tracker writes: as if none
            return None


def new_epoch(how: str, now: float, partitions: int) -> Epoch:
    return Epoch("ep_" + secrets.token_hex(8), how, now, partitions)


class Identity:
    """This process's view of its Redis's epoch."""

    def __init__(
        self,
        redis: Redis,
        clock: Clock,
        partitions: int = 1,
        places: Callable[[], Sequence[tuple[Redis, keys.Keyspace]]] = tuple,
    ) -> None:
        self.redis = redis
        self.clock = clock
        self.partitions = partitions
        self._places = places  # each partition's connection and keys, once they are made
        self.epoch: Epoch | None = None
        self.lost = False
        self._checked = float("-inf")

    @property
    def copies(self) -> list[tuple[Redis, keys.Keyspace]]:
        """Where the partitions keep their copy of the epoch: those not under the home tag."""
        return [(r, k) for r, k in self._places() if k.IDENTITY != keys.HOME.IDENTITY]

    async def establish(self) -> Epoch:
        """Read the epoch at start, writing one first if Redis has none. Raises
        LayoutOutdated if it holds records in the layout before hash tags, PartitionsChanged if
        they were written with another partition count than this process's."""
        fresh = new_epoch(INITIALISED, self.clock.now(), self.partitions)
        if not await self.redis.exists(keys.HOME.IDENTITY) and await layout.outdated(self.redis):
            raise LayoutOutdated(OUTDATED)
        if await self.redis.set(keys.HOME.IDENTITY, fresh.text(), nx=True):
            log.info("initialised this Redis for the tracker (epoch %s)", fresh.id)
        found = Epoch.parse(await self.redis.get(keys.HOME.IDENTITY)) or fresh
        for where, space in self.copies:
            await where.set(space.IDENTITY, found.text(), nx=True)  # a new partition's copy
        if found.partitions != self.partitions:
            raise PartitionsChanged(
                f"the records are spread over {found.partitions} partition(s) and "
                f"TRACKER_PARTITIONS is {self.partitions}: set it to {found.partitions} (the "
                "count is fixed for a deployment; see Scaling out in docs/deploying.md)"
            )
        self.epoch, self.lost, self._checked = found, False, time.monotonic()
        return found

    async def verify(self) -> bool:
        """Whether Redis still holds this process's epoch (read at most every CHECK_EVERY
        seconds). A process that could not read it at its start (Redis was away) reads it
        now. Raises RedisError while Redis is away."""
        if self.epoch is None:
            await self.establish()
            return True
        if time.monotonic() - self._checked < CHECK_EVERY:
            return not self.lost
        self._checked = time.monotonic()
        found = Epoch.parse(await self.redis.get(keys.HOME.IDENTITY))
        if found is not None and not await self._copies_hold(found):
            found = None  # a partition's Redis lost its data: as if the home's had
        if found == self.epoch:
            if self.lost:
                log.warning("Redis holds the tracker's epoch again (%s): serving", found.id)
            self.lost = False
        elif found is not None and found.how == STARTED_OVER and found.at >= self.epoch.at:
            log.warning("the tracker was started over on purpose (epoch %s): serving", found.id)
            self.epoch, self.lost = found, False
        else:
            if not self.lost:
                log.error(
                    "Redis lost the tracker's data: its epoch %s is %s; refusing to serve or "
                    "work until it is back or the operator starts over "
                    "(qrtracker redis start-over)",
                    self.epoch.id,
                    "gone" if found is None else f"replaced by {found.id}",
                )
            self.lost = True
        metrics.REDIS_IDENTITY_LOST.set(1 if self.lost else 0)
        return not self.lost

    async def _copies_hold(self, epoch: Epoch) -> bool:
        """Whether every partition holds `epoch` too."""
        for where, space in self.copies:
            if Epoch.parse(await where.get(space.IDENTITY)) != epoch:
                return False
        return True

    async def require(self) -> None:
        """Raise DataLost (503) while Redis has lost the tracker's epoch: answering 401 to
        every client and 404 for every task would hide the loss."""
        if not await self.verify():
            raise DataLost(LOST)

    async def start_over(self, now: float) -> Epoch:
        """Write a new epoch on purpose, under the home tag and in every partition: every
        process takes it up, serving what Redis holds."""
        epoch = new_epoch(STARTED_OVER, now, self.partitions)
        for where, space in self.copies:
            await where.set(space.IDENTITY, epoch.text())
        await self.redis.set(keys.HOME.IDENTITY, epoch.text())  # last: the one processes read
        return epoch
