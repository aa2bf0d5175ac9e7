"""Sends a fixed trace with the Python OpenTelemetry SDK to an OTLP endpoint.

Used by crates/cli/tests/python_client.rs, which sends the same trace through
the project's Rust exporter and compares what `dspans collector` wrote.

    python otel_python_client.py grpc 127.0.0.1:4317 SENDER
    python otel_python_client.py http http://127.0.0.1:4318/v1/traces SENDER

The trace (offsets in ms from the root's start):

    checkout        SERVER  0..100   attributes of every type
      reserve stock INTERNAL 10..30
      charge card   CLIENT  40..80   link to "reserve stock"
        send receipt INTERNAL 60..75 event "queued" at 65, status ERROR

Every span is exported as it ends; any failed export exits with status 1.
"""

import sys
import time

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

MS = 1_000_000


class Checked(SpanExporter):
    """Delegates to the OTLP exporter and remembers failed exports."""

    def __init__(self, inner):
        self.inner = inner
        self.failures = 0

    def export(self, spans):
        result = self.inner.export(spans)
        if result != SpanExportResult.SUCCESS:
            self.failures += 1
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self.inner.force_flush(timeout_millis)


def exporter(protocol, endpoint):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=10)
    if protocol == "http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, timeout=10)
    raise SystemExit(f"unknown protocol {protocol!r}")


def main():
    protocol, endpoint, sender = sys.argv[1:4]
    checked = Checked(exporter(protocol, endpoint))
    provider = TracerProvider(
        resource=Resource.create({"service.name": "shop", "test.sender": sender})
    )
    provider.add_span_processor(SimpleSpanProcessor(checked))
    tracer = provider.get_tracer("shop-test")

    t0 = time.time_ns()
    root = tracer.start_span(
        "checkout",
        kind=SpanKind.SERVER,
        start_time=t0,
        attributes={
            "http.request.method": "POST",
            "order.items": 3,
            "order.total": 42.5,
            "order.gift": True,
            "order.tags": ["fragile", "express"],
        },
    )
    root_cx = trace.set_span_in_context(root)

    reserve = tracer.start_span(
        "reserve stock",
        context=root_cx,
        kind=SpanKind.INTERNAL,
        start_time=t0 + 10 * MS,
        attributes={"stock.sku": "sku-1"},
    )
    reserve.end(end_time=t0 + 30 * MS)

    charge = tracer.start_span(
        "charge card",
        context=root_cx,
        kind=SpanKind.CLIENT,
        start_time=t0 + 40 * MS,
        attributes={"payment.provider": "acme"},
        links=[Link(reserve.get_span_context(), {"link.reason": "after reservation"})],
    )
    receipt = tracer.start_span(
        "send receipt",
        context=trace.set_span_in_context(charge),
        kind=SpanKind.INTERNAL,
        start_time=t0 + 60 * MS,
        attributes={"mail.to": "buyer@example.com"},
    )
    receipt.add_event("queued", {"queue.depth": 2}, timestamp=t0 + 65 * MS)
    receipt.set_status(Status(StatusCode.ERROR, "mailbox full"))
    receipt.end(end_time=t0 + 75 * MS)
    charge.end(end_time=t0 + 80 * MS)
    root.end(end_time=t0 + 100 * MS)

    provider.shutdown()
    if checked.failures:
        print(f"{checked.failures} export(s) to {endpoint} failed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
