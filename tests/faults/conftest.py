"""The fault suite's settings: compressed clocks tuned for quick recovery."""

from __future__ import annotations

import pytest

from tests.support import fast_settings
from tracker.devtools.simulator import Simulator
from tracker.settings import Settings


@pytest.fixture
def settings(redis_url: str, arq_redis_url: str | None, simulator: Simulator) -> Settings:
    """Compressed clocks, and a job time-out of 2 s: a dead worker's leases run out 7 s on."""
    return fast_settings(
        redis_url,
        simulator,
        arq_redis_url=arq_redis_url,
        job_timeout_override=2.0,
        upstream_timeout=0.5,
        delivery_timeout=1.0,
        delivery_schedule=(0.2, 0.4, 0.8, 1.6, 3.2),
        registration_rate=1_000_000,
        shutdown_grace=5.0,
        breaker_open=1.0,
        breaker_max_open=4.0,
    )
