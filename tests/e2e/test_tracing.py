"""One trace follows a store across the real processes: the platform's services export their
spans by OTLP/HTTP to a receiver started here (what an OpenTelemetry collector would get),
and the trace of one POST /api/v1/stores holds the API's request, the provisioner's work and
every step of the recipe, the cluster calls inside the steps, and the notifier's fan-out of
the store's events."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from woostore_devstack.platform import running_platform
from woostore_provisioner.recipe import PROVISION

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
DEADLINE_SECONDS = 60.0


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str


class Receiver:
    """An OTLP/HTTP trace endpoint (protobuf), keeping every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.add(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: the test reads the spans, not the requests

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, request: ExportTraceServiceRequest) -> None:
        with self._lock:
            for resource_spans in request.resource_spans:
                attributes = {
                    a.key: a.value.string_value for a in resource_spans.resource.attributes
                }
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(
                            ReceivedSpan(
                                service=attributes.get("service.name", ""),
                                name=span.name,
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_id=span.parent_span_id.hex(),
                            )
                        )

    def of_trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def named(self, name: str) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self.spans if span.name == name]

    def __enter__(self) -> Receiver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def wait_until(found: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if found():
            return
        time.sleep(0.2)
    pytest.fail(f"within {DEADLINE_SECONDS:.0f} s: {what}")


def test_one_trace_follows_a_store_across_the_api_the_provisioner_and_the_notifier(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> None:
    with running_platform(
        tmp_path_factory.mktemp("platform"),
        WOOSTORE_SIM_TIME_SCALE="0.05",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_BSP_SCHEDULE_DELAY="200",  # ms between exports: the test need not wait 5 s
    ) as platform:
        created = httpx.post(
            f"{platform.api_url}/api/v1/stores", json={"name": "Traced"}, headers=platform.headers
        )
        assert created.status_code == 202, created.text
        wait_until(lambda: receiver.named("POST /api/v1/stores"), "the API's request span")
        [request] = receiver.named("POST /api/v1/stores")
        steps = [step.name for step in PROVISION.steps]

        def whole() -> bool:
            names = {(span.service, span.name) for span in receiver.of_trace(request.trace_id)}
            return {("woostore-provisioner", step) for step in steps} <= names and (
                "woostore-notifier",
                "notifier fan-out",
            ) in names

        wait_until(whole, "every step's span and the notifier's fan-out in the request's trace")

    spans = receiver.of_trace(request.trace_id)
    by_id = {span.span_id: span for span in spans}
    assert request.parent_id == ""  # the root
    work = [span for span in spans if span.name == "work provision"]
    assert work
    assert {by_id[w.parent_id].service for w in work if w.parent_id in by_id} == {"woostore-api"}
    for step in steps:
        [span] = [s for s in spans if s.name == step]
        assert by_id[span.parent_id].name == "work provision", step
    install = next(s for s in spans if s.name == "cluster install_release")
    assert by_id[install.parent_id].name == "helm_release"
    assert {span.service for span in spans} == {
        "woostore-api", "woostore-provisioner", "woostore-notifier",
    }  # fmt: skip
