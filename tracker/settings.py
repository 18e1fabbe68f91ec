"""The one settings object, read from the environment once and passed explicitly."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tracker.errors import ConfigurationError

DEFAULT_QUICKROUTER_BASE_URL = "https://api.quickrouter.ai"

# Svix's schedule: about 27 hours in all, which covers a receiver's overnight outage.
DEFAULT_DELIVERY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


LOG_LEVELS = ("debug", "info", "warning", "error")


MAX_PARTITIONS = 256


@dataclass(frozen=True)
class Settings:
    """Every setting of the tracker. Times are in seconds.

    Build it with :meth:`from_env`; tests build it directly with compressed times.
    """

    redis_url: str | None = None
    # A Redis of arq's own for the worker's frame and its cron (unset: REDIS_URL's); the
    # tracker's records stay on REDIS_URL (issue 26: arq does not run on Redis Cluster).
    arq_redis_url: str | None = None
    # How many partitions the records are spread over: on a Redis Cluster, each partition's
    # records sit in one slot, so this many slots share the work (docs/deploying.md). Fixed
    # for a deployment: the first process to start records it, and others refuse another.
    partitions: int = 1
    quickrouter_base_url: str = DEFAULT_QUICKROUTER_BASE_URL
    quickrouter_api_key: str | None = field(default=None, repr=False)
    allow_private_callbacks: bool = False
    # Fernet keys, comma separated: the first seals stored credentials, every one opens them.
    encryption_keys: str | None = field(default=None, repr=False)
    # When set, GET /metrics asks for `Authorization: Bearer <this>`.
    metrics_token: str | None = field(default=None, repr=False)
    # The operator's sign-in to the dashboard's fleet view (unset: no operator view), and
    # whether its session cookie is sent over HTTPS only (set it behind TLS).
    admin_token: str | None = field(default=None, repr=False)
    ui_secure_cookie: bool = False
    # Failed dashboard sign-ins one address may make in a minute; then 429 until it ends.
    ui_sign_ins_per_minute: int = 10
    data_dir: Path = Path(".qrtracker")

    # Polling: a first delay that grows by `poll_factor` to `poll_max_delay`, with +/- jitter.
    poll_first_delay: float = 10.0
    poll_factor: float = 1.5
    poll_max_delay: float = 30.0
    poll_jitter: float = 0.1
    poll_deadline: float = 1800.0
    # 401s and unknown ids are retried this many times before the task fails.
    # With enough finished tasks of a model, polls go where completion is likely (see
    # `tracker.estimates`), waiting at most this long between two.
    poll_adaptive_max_delay: float = 120.0
    # Until then (a model with too few finished tasks), a running task is polled every this
    # long from its registration on, as the 5-second loop a user would write (less the
    # tracker's own time): with no idea of when it ends, a long wait is all lag. An overdue
    # task of a learned model (older than nearly every one seen) never waits longer either.
    poll_unlearned_max_delay: float = 4.7
    # The loop the tracker replaces: a task of a model not learned yet never makes more than
    # one request beyond those of a poll every this long from its registration by the same
    # moment (see `polling.loop_budget_at`). 0: no such bound.
    poll_loop_interval: float = 5.0
    # Once a task's likely end is a narrow window (its last steps seen), poll across it this
    # far apart, so no end inside it is seen later than that (0: at the learned quantiles).
    poll_window_gap: float = 1.6
    # Inside the window where a task will likely end, also poll every this share of its age
    # (0.005: under a second for a Veo task). 0: only at the learned quantiles, fewer requests.
    poll_probe_step: float = 0.0
    # How often a worker re-reads what finished tasks taught (kept in Redis, shared).
    learning_refresh: float = 15.0
    rejection_limit: int = 3
    upstream_timeout: float = 10.0
    # Requests per second that all workers together may send with one QuickRouter key
    # (0: no limit), and the burst above it.
    upstream_rate: float = 0.0
    upstream_burst: int = 10

    # One attempt, all of it (name resolution, connect, TLS, sending, the answer), within this.
    delivery_timeout: float = 15.0
    delivery_schedule: tuple[float, ...] = DEFAULT_DELIVERY_SCHEDULE
    delivery_jitter: float = 0.2
    # Whether each attempt keeps the request's headers and the answer's headers, first 4 KiB
    # of body and times (docs/api.md, attempt records); off: its status or error and latency only.
    record_answers: bool = True
    # Attempts in flight to one callback origin (scheme, host, port), across the fleet.
    delivery_per_origin: int = 10
    # Attempts in flight for one client across all its origins and the whole fleet: no number
    # of origins (dead ones, say) buys a client more than this share of the workers' slots.
    deliveries_per_client: int = 50
    # An origin's circuit opens after this many failures in a row, for `breaker_open` seconds,
    # twice as long after each failed probe, up to `breaker_max_open`.
    breaker_failures: int = 5
    breaker_open: float = 10.0
    breaker_max_open: float = 600.0
    # A destination (a client's callback origin) whose attempts fail without a break this long
    # is disabled until its owner enables it (0: never). Svix's five days.
    disable_after: float = 5 * 86400.0

    # After `clients rotate-secret`, the old secret keeps signing (beside the new) this long.
    secret_rotation_overlap: float = 86400.0
    # Registrations one client may make per second; more answer 429.
    registration_rate: int = 20
    # A registration answers 201 only once this many replicas have its records (Redis WAIT,
    # up to 1 s; else 503, and the client tries again): with Sentinel, set it to 1 or more so
    # a failover cannot lose a registration that was answered.
    redis_wait_replicas: int = 0
    # Whether a client without a QuickRouter key of its own may have its tasks polled with the
    # deployment's QUICKROUTER_API_KEY, and whether, under that key, a task id another client
    # registered first may be registered too (it would see that client's results).
    shared_upstream_key: bool = True
    shared_tasks: bool = False
    # Seconds added to this process's own clock: a wrong clock, for tests of the correction
    # from Redis's (tracker.store.clock). Never needed in production.
    clock_skew: float = 0.0
    # A request body that has not fully arrived after this long is answered 408.
    request_body_timeout: float = 10.0
    # Caps per client (docs/api.md, Limits): subscriptions one client may hold on one task, all
    # clients' subscriptions on one task, tracked tasks one client may have at once, and
    # redeliver calls per client per minute.
    subscriptions_per_task_per_client: int = 10
    subscriptions_per_task: int = 100
    live_tasks_per_client: int = 10_000
    redeliveries_per_minute: int = 10

    # Ended tasks, their subscriptions, deliveries and attempt logs are kept this long, then
    # expire; live records never do. So are the events of each client's feed.
    retention: float = 7 * 86400.0
    # Each client's event feed keeps at most this many events (the oldest go first).
    events_per_client: int = 10_000
    # Event streams (SSE) and `?wait=` requests one client may hold open at once, across the
    # fleet, and how often an open stream sends a heartbeat.
    streams_per_client: int = 20
    stream_heartbeat: float = 15.0
    # An event stream whose reader takes no bytes for this long is cut off (aborted).
    stream_send_timeout: float = 30.0
    # The time-out of one poll or delivery attempt; 0 means the longer HTTP time-out + 15 s.
    job_timeout_override: float = 0.0

    # A worker serves its Prometheus metrics here (0: not at all); the API serves /metrics.
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    # `json` (one object a line), `text`, or `auto`: text on a terminal, JSON elsewhere.
    log_format: str = "auto"
    # The least severe lines written: `debug` adds a line for each delivered attempt (they are
    # all in the attempt logs the API shows; failed attempts are logged at `info`).
    log_level: str = "info"

    # Copies of the videos in object storage (`tracker.core.storage`): where they go unless a
    # client has its own (s3://bucket/prefix or file:///folder; unset: no copies), the most
    # bytes one output may have, how long `video.completed` waits for its copies, how long a
    # copy's objects are kept, copies one client may have in flight across the fleet, how long
    # copies one worker makes at once (each holds about two 8 MiB parts in memory), how long
    # one try of a copy may take, and how long an event's links work.
    storage_url: str | None = None
    storage_max_bytes: int = 4 * 1024**3
    storage_deadline: float = 1800.0
    storage_retention: float = 7 * 86400.0
    storage_per_client: int = 4
    storage_copies_per_worker: int = 8
    storage_copy_timeout: float = 900.0
    storage_link_ttl: float = 7 * 86400.0
    # Where clients reach the API (http://host:port), for links to copies kept in a folder.
    public_url: str | None = None

    sweep_interval: int = 15
    queue_poll_interval: float = 0.5
    worker_concurrency: int = 100
    shutdown_grace: float = 20.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from `environ` (default: the process environment)."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            name = _env_name(f.name)
            if name in env and env[name] != "":
                values[f.name] = _parse(name, str(f.type), env[name])
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse combinations that cannot work, with the variable to fix."""
        if self.poll_first_delay <= 0 or self.poll_max_delay < self.poll_first_delay:
            raise ConfigurationError(
                "TRACKER_POLL_MAX_DELAY must be >= TRACKER_POLL_FIRST_DELAY > 0"
            )
        if self.poll_factor < 1:
            raise ConfigurationError("TRACKER_POLL_FACTOR must be >= 1")
        if not 0 <= self.poll_jitter < 1 or not 0 <= self.delivery_jitter < 1:
            raise ConfigurationError("jitter settings must be in [0, 1)")
        if not self.delivery_schedule or min(self.delivery_schedule) < 0:
            raise ConfigurationError("TRACKER_DELIVERY_SCHEDULE needs one or more delays >= 0")
        if self.sweep_interval < 1 or 60 % self.sweep_interval:
            raise ConfigurationError("TRACKER_SWEEP_INTERVAL must divide 60")
        if self.log_format not in {"auto", "json", "text"}:
            raise ConfigurationError("TRACKER_LOG_FORMAT must be auto, json or text")
        if self.log_level.lower() not in LOG_LEVELS:
            raise ConfigurationError(f"TRACKER_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        at_least_zero = (
            self.upstream_rate, self.poll_probe_step, self.poll_loop_interval,
            self.poll_window_gap, self.retention, self.disable_after,
        )  # fmt: skip
        if min(at_least_zero) < 0:
            raise ConfigurationError(
                "TRACKER_UPSTREAM_RATE, TRACKER_POLL_PROBE_STEP, TRACKER_POLL_LOOP_INTERVAL, "
                "TRACKER_POLL_WINDOW_GAP, TRACKER_RETENTION and TRACKER_DISABLE_AFTER must be >= 0"
            )
        if not 0 <= self.metrics_port < 65536:
            raise ConfigurationError("TRACKER_METRICS_PORT must be a port number (0: off)")
        counts = {
            "TRACKER_REJECTION_LIMIT": self.rejection_limit,
            "TRACKER_WORKER_CONCURRENCY": self.worker_concurrency,
            "TRACKER_REGISTRATION_RATE": self.registration_rate,
            "TRACKER_SUBSCRIPTIONS_PER_TASK_PER_CLIENT": self.subscriptions_per_task_per_client,
            "TRACKER_SUBSCRIPTIONS_PER_TASK": self.subscriptions_per_task,
            "TRACKER_LIVE_TASKS_PER_CLIENT": self.live_tasks_per_client,
            "TRACKER_REDELIVERIES_PER_MINUTE": self.redeliveries_per_minute,
            "TRACKER_DELIVERY_PER_ORIGIN": self.delivery_per_origin,
            "TRACKER_DELIVERIES_PER_CLIENT": self.deliveries_per_client,
            "TRACKER_BREAKER_FAILURES": self.breaker_failures,
            "TRACKER_EVENTS_PER_CLIENT": self.events_per_client,
            "TRACKER_STREAMS_PER_CLIENT": self.streams_per_client,
            "TRACKER_UI_SIGN_INS_PER_MINUTE": self.ui_sign_ins_per_minute,
            "TRACKER_STORAGE_MAX_BYTES": self.storage_max_bytes,
            "TRACKER_STORAGE_PER_CLIENT": self.storage_per_client,
            "TRACKER_STORAGE_COPIES_PER_WORKER": self.storage_copies_per_worker,
        }
        if too_low := [name for name, value in counts.items() if value < 1]:
            raise ConfigurationError(f"{', '.join(too_low)} must be >= 1")
        positive = (
            self.request_body_timeout, self.delivery_timeout, self.breaker_open,
            self.stream_heartbeat, self.poll_unlearned_max_delay, self.stream_send_timeout,
            self.storage_deadline, self.storage_retention, self.storage_copy_timeout,
            self.storage_link_ttl,
        )  # fmt: skip
        if min(positive) <= 0:
            raise ConfigurationError(
                "TRACKER_REQUEST_BODY_TIMEOUT, TRACKER_DELIVERY_TIMEOUT, TRACKER_BREAKER_OPEN, "
                "TRACKER_STREAM_HEARTBEAT, TRACKER_POLL_UNLEARNED_MAX_DELAY, "
                "TRACKER_STREAM_SEND_TIMEOUT and the TRACKER_STORAGE_ times must be > 0"
            )
        if not 1 <= self.partitions <= MAX_PARTITIONS:
            raise ConfigurationError(f"TRACKER_PARTITIONS must be 1 to {MAX_PARTITIONS}")
        if self.breaker_max_open < self.breaker_open:
            raise ConfigurationError("TRACKER_BREAKER_MAX_OPEN must be >= TRACKER_BREAKER_OPEN")

    def to_env(self) -> dict[str, str]:
        """The environment that `from_env` reads back as these settings (for child processes)."""
        env = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, tuple):
                value = ",".join(str(v) for v in value)
            env[_env_name(f.name)] = str(value)
        return env

    @property
    def job_timeout(self) -> float:
        """The time-out of one poll or delivery attempt: its HTTP call plus Redis work.

        Kept short on purpose: a dead worker's polls come due again after this plus 5 s (their
        lease), and arq re-runs its delivery jobs after this plus 10 s.
        """
        if self.job_timeout_override > 0:
            return self.job_timeout_override
        return max(self.upstream_timeout, self.delivery_timeout) + 15.0

    @property
    def lease(self) -> float:
        """How long a claim (a poll's, an attempt's) and an origin's slot are held. Work is cut
        off at the job time-out; its lease lasts a little longer, so nobody claims a task or a
        delivery while its work may still be running."""
        return self.job_timeout + 5.0

    @property
    def delivery_window(self) -> float:
        """The longest a delivery can stay pending, jitter and Retry-After included."""
        return sum(self.delivery_schedule) * (1 + self.delivery_jitter) + self.job_timeout * (
            len(self.delivery_schedule) + 1
        )


_UNPREFIXED = {"redis_url", "quickrouter_base_url", "quickrouter_api_key"}
_RENAMED = {"job_timeout_override": "TRACKER_JOB_TIMEOUT"}


def _env_name(field_name: str) -> str:
    if field_name in _UNPREFIXED:
        return field_name.upper()
    return _RENAMED.get(field_name, "TRACKER_" + field_name.upper())


def _parse(name: str, type_name: str, raw: str) -> object:
    try:
        if type_name == "bool":
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
        if type_name == "Path":
            return Path(raw)
        if type_name == "tuple[float, ...]":
            return tuple(float(part) for part in raw.split(",") if part.strip())
        return raw.strip()
    except ValueError:
        raise ConfigurationError(f"{name}: cannot read {raw!r} as {type_name}") from None
