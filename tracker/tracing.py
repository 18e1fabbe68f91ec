"""OpenTelemetry traces of a task's life: its registration, each poll, each copy and each
webhook attempt, as spans of one trace per task, exported over OTLP when
`OTEL_EXPORTER_OTLP_ENDPOINT` is set (the SDK reads the rest of the `OTEL_*` variables).

One trace per task without passing context between processes: the trace id is derived from
the task's tracking id, so the API's registration and every worker's polls and attempts land
in the same trace whichever process made them. Off (the default), a span is one test of a
module global: nothing measurable.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

_tracer: trace.Tracer | None = None  # set by `configure`: None is off
_provider: TracerProvider | None = None


def configure(
    service: str,
    environ: Mapping[str, str] | None = None,
    *,
    processor: SpanProcessor | None = None,
) -> bool:
    """Turn tracing on for this process when OTLP is configured (or a `processor` is given:
    the tests' in-memory exporter); whether it is on."""
    global _tracer, _provider
    if _tracer is not None:  # on already (API and worker in one process: `qrtracker up`)
        return True
    env = os.environ if environ is None else environ
    if processor is None:
        if not env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            return False
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter: SpanExporter = OTLPSpanExporter()
        processor = BatchSpanProcessor(exporter)
    _provider = TracerProvider(resource=Resource.create({"service.name": service}))
    _provider.add_span_processor(processor)
    _tracer = _provider.get_tracer("quickrouter-tracker")
    return True


def shutdown() -> None:
    """Send what is buffered and turn tracing off."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


def trace_id_of(tracking_id: str) -> int:
    """The trace id of a task's life: the same in every process."""
    return int.from_bytes(hashlib.sha256(tracking_id.encode()).digest()[:16], "big") or 1


@contextlib.contextmanager
def task_span(name: str, tracking_id: str, **attributes: Any) -> Iterator[trace.Span | None]:
    """A span of the task's trace (None when tracing is off)."""
    if _tracer is None:
        yield None
        return
    parent = SpanContext(
        trace_id=trace_id_of(tracking_id),
        span_id=random.getrandbits(64) or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    context = trace.set_span_in_context(NonRecordingSpan(parent))
    attrs = {"qrtracker.task_id": tracking_id}
    attrs.update({f"qrtracker.{k}": v for k, v in attributes.items() if v is not None})
    with _tracer.start_as_current_span(name, context=context, attributes=attrs) as span:
        yield span


def current_trace_id() -> str | None:
    """The current span's trace id as hex, for log lines (None outside a span, or off)."""
    if _tracer is None:
        return None
    found = trace.get_current_span().get_span_context()
    return f"{found.trace_id:032x}" if found.is_valid else None
