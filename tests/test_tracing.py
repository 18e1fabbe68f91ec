"""Traces (issue 25): a task's registration, its polls and its webhook attempts are spans of one
trace, whichever process made them; off unless configured; trace ids in the JSON log lines.
Recorded with the SDK's in-memory exporter."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support import TASK, Parts, Peers, Trip, queued, register, run
from tracker import tracing
from tracker.logs import JsonFormatter
from tracker.settings import Settings
from workers.context import WorkerContext
from workers.deliver import attempt_delivery
from workers.poll import poll_task


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure("qrtracker-test", processor=SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        tracing.shutdown()


def test_off_unless_an_otlp_endpoint_is_set() -> None:
    assert not tracing.configure("qrtracker-test", environ={})
    with tracing.task_span("poll", "veo3:1-x") as span:
        assert span is None
    assert tracing.current_trace_id() is None


def test_a_tasks_polls_and_attempts_are_one_trace(
    settings: Settings, spans: InMemorySpanExporter
) -> None:
    async def body(ctx: WorkerContext, peers: Peers, parts: Parts) -> None:
        await register(parts)
        peers.upstream[TASK] = {"status": "video_generating"}
        await poll_task(
            ctx, ctx["store"].shards[0], TASK, await ctx["store"].shards[0].tasks.get(TASK)
        )
        peers.upstream[TASK] = {"status": "completed", "video_url": "https://cdn.test/v.mp4"}
        await poll_task(
            ctx, ctx["store"].shards[0], TASK, await ctx["store"].shards[0].tasks.get(TASK)
        )
        (delivery_id,) = await queued(ctx)
        await attempt_delivery(ctx, ctx["store"].shards[0], delivery_id)

    run(settings, body)
    found = spans.get_finished_spans()
    assert [s.name for s in found] == ["poll", "poll", "webhook attempt"]
    assert {s.context.trace_id for s in found} == {tracing.trace_id_of(TASK)}
    polls = [dict(s.attributes or {}) for s in found[:2]]
    assert [p["qrtracker.outcome"] for p in polls] == ["running", "completed"]
    attempt = dict(found[2].attributes or {})
    assert attempt["qrtracker.status_code"] == 204 and attempt["qrtracker.verdict"] == "delivered"


def test_a_log_line_inside_a_span_carries_its_trace_id(spans: InMemorySpanExporter) -> None:
    record = logging.LogRecord("tracker.poll", logging.INFO, __file__, 1, "polled", None, None)
    with tracing.task_span("poll", "veo3:1-logged"):
        line = json.loads(JsonFormatter().format(record))
    assert line["trace_id"] == f"{tracing.trace_id_of('veo3:1-logged'):032x}"
    assert "trace_id" not in json.loads(JsonFormatter().format(record))


def test_a_registration_is_a_span_of_its_tasks_trace(
    spans: InMemorySpanExporter, trip: Trip
) -> None:
    task = trip.script()
    trip.register(task.task_id)
    (registered,) = [s for s in spans.get_finished_spans() if s.name == "register"]
    assert registered.context.trace_id == tracing.trace_id_of(task.task_id)
    assert dict(registered.attributes or {})["qrtracker.client_id"] == trip.client["id"]
