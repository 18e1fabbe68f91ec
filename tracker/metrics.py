"""Prometheus metrics: the counters and histograms that the jobs and the API move.

Each process keeps its own registry (prometheus_client's default). The API serves it at
`/metrics`, with the fleet's gauges of `tracker.store.gauges` (tasks by state, queue depth,
oldest overdue wake-up) read at scrape time; a worker serves its own on
`TRACKER_METRICS_PORT`. `qrtracker up` runs both halves in one process, so its `/metrics` has
everything.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
DELIVERY_DEFERRALS = Counter(
    "qrtracker_delivery_deferrals_total",
    "Delivery wake-ups put off without an attempt: the origin was open or had no free slot.",
    ["reason"],
)
ORIGINS_OPENED = Counter(
    "qrtracker_origins_opened_total", "Times a callback origin's circuit opened."
)
STALE_ATTEMPTS = Counter(
    "qrtracker_stale_attempts_total",
    "Attempts not recorded because their delivery had moved on (a paused sender, a redeliver).",
)
DEAD_DELIVERIES = Counter(
    "qrtracker_dead_deliveries_total", "Deliveries whose whole schedule failed."
)
COPIES = Counter(
    "qrtracker_storage_copies_total",
    "Outputs copied to object storage, by outcome: stored, or the storage error code.",
    ["outcome"],
)
COPIED_BYTES = Counter("qrtracker_storage_bytes_total", "Bytes stored in object storage.")
NOTIFICATION_LAG = Histogram(
    "qrtracker_notification_lag_seconds",
    "From the upstream turning a task final to its webhook being accepted.",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
)


def attempt_label(attempt: int) -> str:
    return str(min(attempt, 8))


REDIS_IDENTITY_LOST = Gauge(
    "qrtracker_redis_identity_lost",
    "1 while this process refuses to serve or work: its Redis lost the tracker's epoch (its "
    "data); see docs/reliability.md.",
)
