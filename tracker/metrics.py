"""Prometheus metrics: counters and histograms the jobs move, and gauges read from Redis.

Each process keeps its own registry (prometheus_client's default). The API serves it at
`/metrics`, with the Redis gauges (tasks by state, queue depth, oldest overdue wake-up) read
at scrape time; a worker serves its own on `TRACKER_METRICS_PORT`. `qrtracker up` runs both
halves in one process, so its `/metrics` has everything.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError

from tracker.store import keys

REGISTRATIONS = Counter(
    "qrtracker_registrations_total", "Registrations answered 201 or 200.", ["result"]
)
TASKS_ENDED = Counter("qrtracker_tasks_ended_total", "Tasks that ended, by final state.", ["state"])
POLLS = Counter("qrtracker_polls_total", "Polls of QuickRouter, by outcome.", ["outcome"])
UPSTREAM_RESPONSES = Counter(
    "qrtracker_upstream_responses_total", "QuickRouter answers by HTTP status (or error).", ["code"]
)
UPSTREAM_SECONDS = Histogram(
    "qrtracker_upstream_request_seconds",
    "Time of one QuickRouter query.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DELIVERIES = Counter(
    "qrtracker_delivery_attempts_total",
    "Webhook delivery attempts, by verdict and attempt number (8 means 8 or more).",
    ["outcome", "attempt"],
)
DELIVERY_SECONDS = Histogram(
    "qrtracker_delivery_seconds",
    "Time of one webhook POST.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15),
)
DEAD_DELIVERIES = Counter(
    "qrtracker_dead_deliveries_total", "Deliveries whose whole schedule failed."
)
NOTIFICATION_LAG = Histogram(
    "qrtracker_notification_lag_seconds",
    "From the upstream turning a task final to its webhook being accepted.",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
)


def attempt_label(attempt: int) -> str:
    return str(min(attempt, 8))


class RedisGauges(Collector):
    """Gauges read from Redis when scraped: the state of the whole fleet, not of one process."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url

    def collect(self) -> Iterable[GaugeMetricFamily]:
        now = time.time()
        try:
            with Redis.from_url(self.redis_url, socket_timeout=2) as conn:
                pipe = conn.pipeline(transaction=False)
                pipe.zcard(keys.DUE_TASKS)
                pipe.zcard(keys.DUE_DELIVERIES)
                pipe.zcard("arq:queue")
                pipe.zrange(keys.DUE_TASKS, 0, 0, withscores=True)
                pipe.zrange(keys.DUE_DELIVERIES, 0, 0, withscores=True)
                tracking, pending, queued, first_task, first_delivery = pipe.execute()
        except (RedisError, OSError):
            return  # Redis away: no gauges this scrape (/readyz says why); never a failed scrape
        yield _gauge("qrtracker_tasks_tracking", "Tasks being polled.", tracking)
        yield _gauge("qrtracker_deliveries_pending", "Deliveries not yet ended.", pending)
        yield _gauge("qrtracker_queue_depth", "Jobs in the arq queue.", queued)
        overdue = [now - score for _, score in (*first_task, *first_delivery) if score < now]
        yield _gauge(
            "qrtracker_oldest_overdue_seconds",
            "How late the most overdue wake-up (poll or delivery) is.",
            max(overdue, default=0.0),
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
