"""OpenTelemetry tracing: one trace follows a store's request through every hop.

The API's request span is the root. Its context travels in what the request writes: each
store event carries it as the CloudEvents distributed-tracing extension (``traceparent``,
``tracestate``), and each work order as the same two fields. A worker continues the trace
from the work order (:func:`continued`); a program reading the events can continue it too.

Spans are exported by OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or its traces variant) is
set, configured by the standard ``OTEL_*`` variables; otherwise they are made and dropped,
so trace ids still reach the logs and the events. ``OTEL_SDK_DISABLED=true`` turns tracing
off altogether.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager

from opentelemetry import context, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACER_NAME = "woostore"
_PROPAGATOR = TraceContextTextMapPropagator()
_EXPORT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def configure_tracing(service: str) -> TracerProvider | None:
    """The process's tracer provider, named after ``service``; made once (a second call, as
    tests make, returns the first). None when the SDK is disabled."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: f"woostore-{service}"}))
    if any(os.environ.get(name) for name in _EXPORT_VARIABLES):
        # Imported only when used: the exporter reads the OTEL_* variables itself.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def current_carrier() -> dict[str, str]:
    """The current span's context as W3C Trace Context fields (``traceparent`` and, if any,
    ``tracestate``); empty outside a span."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier


@contextmanager
def continued(carrier: Mapping[str, str | None], name: str, **attributes: str) -> Iterator[Span]:
    """A span named ``name`` in the trace ``carrier`` names (a work order's, an event's), or
    a new trace without one."""
    fields = {key: value for key, value in carrier.items() if value}
    token = context.attach(_PROPAGATOR.extract(fields))
    try:
        with tracer().start_as_current_span(name, attributes=attributes) as span:
            yield span
    finally:
        context.detach(token)


class Siblings:
    """Spans that are children of the span current when this was made, opened on demand: a
    recipe's steps, where one step's end and the next one's start are journalled together
    and each event must still carry its own step's span."""

    def __init__(self) -> None:
        self.parent = context.get_current()

    def open(self, name: str, attributes: Mapping[str, str]) -> Span:
        return tracer().start_span(name, context=self.parent, attributes=attributes)


def inside(span: Span, *, end: bool) -> AbstractContextManager[Span]:
    """``span`` the current one while the block runs; ended after (an error recorded) if
    ``end``."""
    return trace.use_span(span, end_on_exit=end, record_exception=end, set_status_on_exception=end)


def log_ids() -> dict[str, str]:
    """The current span's trace and span ids as logs show them (hex), if there is one."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return {}
    return {
        "trace_id": format(span_context.trace_id, "032x"),
        "span_id": format(span_context.span_id, "016x"),
    }
