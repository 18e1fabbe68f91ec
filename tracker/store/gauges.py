"""Gauges read from Redis when scraped: the state of the whole fleet, not of one process."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from tracker.store import keys
from tracker.store.connection import connect_sync


class RedisGauges(Collector):
    """Gauges read from Redis when scraped: the state of the whole fleet, not of one process."""

    def __init__(self, redis_url: str, partitions: int = 1) -> None:
        self.redis_url = redis_url
        self.partitions = partitions

    def collect(self) -> Iterable[GaugeMetricFamily]:
        try:
            figures = [self._read(tag) for tag in keys.partition_tags(self.partitions)]
        except (RedisError, OSError):
            return  # Redis away: no gauges this scrape (/readyz says why); never a failed scrape
        now = figures[0][0]
        tracking, pending, queued, open_origins = (sum(f[n] for f in figures) for n in (1, 2, 3, 6))
        first_task = [entry for f in figures for entry in f[4]]
        first_delivery = [entry for f in figures for entry in f[5]]
        # On a cluster, the fullest of the partitions' primaries: the first to refuse writes.
        memory = max((f[7] for f in figures), key=lambda m: m["used_memory"])
        yield _gauge("qrtracker_tasks_tracking", "Tasks being polled.", tracking)
        yield _gauge("qrtracker_deliveries_pending", "Deliveries not yet ended.", pending)
        yield _gauge(
            "qrtracker_queue_depth", "Deliveries due now, waiting for a dispatcher.", queued
        )
        yield _gauge(
            "qrtracker_origins_open",
            "Callback origins whose circuit is open: their deliveries wait.",
            open_origins,
        )
        yield _gauge(
            "qrtracker_redis_used_memory_bytes", "Memory Redis uses.", memory["used_memory"]
        )
        yield _gauge(
            "qrtracker_redis_maxmemory_bytes",
            "Redis's maxmemory (0: none set): past it, writes are refused.",
            memory.get("maxmemory", 0),
        )
        overdue = [now - score for _, score in (*first_task, *first_delivery) if score < now]
        yield _gauge(
            "qrtracker_oldest_overdue_seconds",
            "How late the most overdue wake-up (poll or delivery) is.",
            max(overdue, default=0.0),
        )

    def _read(self, tag: str) -> tuple[Any, ...]:
        """One partition's figures: now, tasks tracking, deliveries pending and due, its
        first due task and delivery, its open origins, and its Redis's memory."""
        space = keys.Keyspace(tag)
        with connect_sync(self.redis_url, tag) as conn:
            seconds, micros = conn.time()  # the fleet's clock (tracker.store.clock)
            now = seconds + micros / 1e6
            pipe = conn.pipeline(transaction=False)
            pipe.zcard(space.DUE_TASKS)
            pipe.zcard(space.DUE_DELIVERIES)
            pipe.zcount(space.DUE_DELIVERIES, "-inf", now)
            pipe.zrange(space.DUE_TASKS, 0, 0, withscores=True)
            pipe.zrange(space.DUE_DELIVERIES, 0, 0, withscores=True)
            pipe.zcount(space.OPEN_ORIGINS, now, "+inf")
            pipe.info("memory")
            return (now, *pipe.execute())


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
