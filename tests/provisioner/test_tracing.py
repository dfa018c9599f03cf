"""One trace follows a store: the request's span, the work order it sends (read back from the
WORK stream, as the provisioner receives it), a span per provisioning step named as the step,
a span per cluster call inside its step, and the trace in every store event the request and
the steps publish (the CloudEvents distributed-tracing extension). Spans are read back from
an in-memory exporter; NATS, PostgreSQL and helm are real."""

from __future__ import annotations

from collections.abc import Callable

from nats.aio.client import Client
from nats.js import JetStreamContext
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.provisioner.test_runner import KeepAlive, stream_events
from tests.support import create_store, stream_messages
from woostore_cluster import Cluster
from woostore_cluster.simulated import SimulatedCluster
from woostore_provisioner.recipe import PROVISION
from woostore_provisioner.runner import Runner
from woostore_shared import tracing
from woostore_shared.logging import add_trace_ids
from woostore_shared.outbox import Outbox
from woostore_shared.topology import WORK_STREAM
from woostore_shared.work import WorkOrder


def parent_of(span: ReadableSpan, spans: list[ReadableSpan]) -> ReadableSpan:
    assert span.parent is not None, f"{span.name} has no parent"
    [parent] = [s for s in spans if s.context.span_id == span.parent.span_id]
    return parent


async def test_a_store_is_one_trace_from_the_request_through_each_step_and_cluster_call(
    make_runner: Callable[[Cluster], Runner],
    cluster: SimulatedCluster,
    api_outbox: Outbox,
    nats_client: Client,
    js: JetStreamContext,
    spans: InMemorySpanExporter,
) -> None:
    with tracing.tracer().start_as_current_span("POST /api/v1/stores") as request:
        store = await create_store(api_outbox)
    trace_id = request.get_span_context().trace_id

    [message] = await stream_messages(nats_client, store.id, stream=WORK_STREAM)
    order = WorkOrder.model_validate_json(message.data or b"")
    assert order.traceparent is not None
    assert order.traceparent.split("-")[1] == format(trace_id, "032x")
    carrier = {"traceparent": order.traceparent, "tracestate": order.tracestate}
    with tracing.continued(carrier, "work provision") as work:  # as WorkDelivery does
        await make_runner(cluster).provision(store.id, KeepAlive())

    finished = list(spans.get_finished_spans())
    assert {span.context.trace_id for span in finished} == {trace_id}
    work_id = work.get_span_context().span_id
    steps = {s.name: s for s in finished if s.parent and s.parent.span_id == work_id}
    assert list(steps) == [step.name for step in PROVISION.steps]
    calls = [span for span in finished if span.name.startswith("cluster ")]
    assert {parent_of(call, finished).name for call in calls} <= set(steps)
    assert parent_of(by_name(calls, "cluster install_release"), finished).name == "helm_release"
    assert parent_of(by_name(calls, "cluster wp core install"), finished).name == (
        "wordpress_install"
    )
    assert by_name(calls, "cluster install_release").attributes == {
        "woostore.namespace": store.namespace
    }

    # Every event carries the trace; a step's progress, its step's span.
    events = await stream_events(js, store.id)
    assert all(e.traceparent and e.traceparent.split("-")[1] == format(trace_id, "032x")
               for e in events)  # fmt: skip
    started = next(e for e in events if e.data.get("step", {}).get("name") == "helm_release")
    assert started.traceparent is not None
    span_id = int(started.traceparent.split("-")[2], 16)
    assert span_id == steps["helm_release"].context.span_id


def by_name(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    [found] = [span for span in spans if span.name == name]
    return found


def test_a_line_logged_inside_a_span_names_its_trace(spans: InMemorySpanExporter) -> None:
    with tracing.tracer().start_as_current_span("a step") as span:
        inside = add_trace_ids(None, "info", {"event": "inside"})
    outside = add_trace_ids(None, "info", {"event": "outside"})

    assert inside["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert inside["span_id"] == format(span.get_span_context().span_id, "016x")
    assert outside == {"event": "outside"}
