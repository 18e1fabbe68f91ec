"""After a round trip, /metrics (the API's and a worker's) moved by the right amounts."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import Trip, WorkerProcess, wait_for
from tracker.devtools.simulator import Fault
from tracker.embedded_redis import free_port
from tracker.settings import Settings

pytestmark = pytest.mark.slow

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    text = httpx.get(url).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_round_trip_moves_every_counter_by_the_right_amount(
    trip: Trip,
    settings: Settings,
    start_api: Callable[[Settings], httpx.Client],
    start_worker: Callable[[Settings], WorkerProcess],
) -> None:
    port = free_port()
    worker_metrics = f"http://127.0.0.1:{port}/metrics"
    start_worker(dataclasses.replace(settings, metrics_port=port))
    wait_for(lambda: _up(worker_metrics), 20, "the worker's metrics endpoint")
    api_metrics = str(trip.api.base_url) + "/metrics"
    api_before = scrape(api_metrics)

    trip.receiver.script(trip.path, 500)  # the first attempt fails, the second is accepted
    task = trip.script(duration=0.2, faults=[Fault.SERVER_ERROR])
    trip.register(task.task_id)
    trip.register(task.task_id, expect=200)
    trip.settled(task.task_id)
    simulator = trip.simulator

    worker = scrape(worker_metrics)
    polls = simulator.requests(task.task_id)
    assert sum(v for (n, _), v in worker.items() if n == "qrtracker_polls_total") == polls
    assert value(worker, "qrtracker_polls_total", outcome="trylater") == 1
    assert value(worker, "qrtracker_polls_total", outcome="completed") == 1
    assert value(worker, "qrtracker_upstream_responses_total", code="500") == 1
    assert value(worker, "qrtracker_upstream_responses_total", code="200") == polls - 1
    assert value(worker, "qrtracker_upstream_request_seconds_count") == polls
    assert value(worker, "qrtracker_tasks_ended_total", state="completed") == 1
    assert value(worker, "qrtracker_delivery_attempts_total", outcome="retry", attempt="1") == 1
    assert value(worker, "qrtracker_delivery_attempts_total", outcome="delivered",
                 attempt="2") == 1  # fmt: skip
    assert value(worker, "qrtracker_delivery_seconds_count") == 2
    assert value(worker, "qrtracker_dead_deliveries_total") == 0
    assert value(worker, "qrtracker_notification_lag_seconds_count") == 1

    api_after = scrape(api_metrics)
    for result, moved in (("created", 1), ("existing", 1)):
        delta = value(api_after, "qrtracker_registrations_total", result=result) - value(
            api_before, "qrtracker_registrations_total", result=result
        )
        assert delta == moved
    assert value(api_after, "qrtracker_tasks_tracking") == 0
    assert value(api_after, "qrtracker_deliveries_pending") == 0
    assert ("qrtracker_oldest_overdue_seconds", ()) in api_after


def _up(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.HTTPError:
        return False
