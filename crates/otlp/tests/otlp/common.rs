//! What the OTLP tests share beside `dspans-test-support`: tracer
//! providers, the three spans they emit, and checks of those spans.

use std::time::Duration;

use dspans_otlp::proto::common::v1::any_value;
use dspans_otlp::proto::trace::v1::Span;
use dspans_otlp::Exporter;
use dspans_test_support::{attr, string};
use opentelemetry::trace::{Span as _, SpanKind, Tracer, TracerProvider as _};
use opentelemetry::KeyValue as OtelKv;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use opentelemetry_sdk::Resource;

/// Generous bound for things that normally take milliseconds.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn provider(exporter: Exporter, service: &str) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_string())
                .build(),
        )
        .with_simple_exporter(exporter)
        .build()
}

/// Ends three spans (parent with two children) with attributes.
pub fn emit_spans(provider: &SdkTracerProvider) {
    let tracer = provider.tracer("dspans-otlp-test");
    let parent = tracer
        .span_builder("parent")
        .with_kind(SpanKind::Server)
        .with_attributes([
            OtelKv::new("zuul_event_id", "ev-1"),
            OtelKv::new("ref_number", 42_i64),
        ])
        .start(&tracer);
    let cx = opentelemetry::Context::current_with_span(parent);
    for name in ["child1", "child2"] {
        let mut child = tracer.start_with_context(name, &cx);
        child.set_attribute(OtelKv::new("result", "SUCCESS"));
        child.set_attribute(OtelKv::new("ok", true));
        child.end();
    }
    use opentelemetry::trace::TraceContextExt;
    cx.span().end();
}

/// SpanData captured by an in-memory exporter, for calling exporters by hand.
pub fn captured_spans(n: usize) -> Vec<SpanData> {
    let memory = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(memory.clone())
        .build();
    let tracer = provider.tracer("capture");
    for i in 0..n {
        let mut span = tracer.start(format!("span-{i}"));
        span.set_attribute(OtelKv::new("i", i as i64));
        span.end();
    }
    memory.get_finished_spans().expect("finished spans")
}

pub fn by_name<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span named {name}"))
}

/// Checks the three spans of [`emit_spans`] as received.
pub fn check_emitted(spans: &[Span]) {
    assert_eq!(spans.len(), 3, "{spans:?}");
    // Simple processor: export in end order.
    let names: Vec<_> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["child1", "child2", "parent"]);
    let parent = by_name(spans, "parent");
    assert_eq!(
        attr(&parent.attributes, "zuul_event_id"),
        Some(&string("ev-1"))
    );
    assert_eq!(
        attr(&parent.attributes, "ref_number"),
        Some(&any_value::Value::IntValue(42))
    );
    assert!(parent.parent_span_id.is_empty());
    assert_eq!(parent.trace_id.len(), 16);
    for name in ["child1", "child2"] {
        let child = by_name(spans, name);
        assert_eq!(child.trace_id, parent.trace_id);
        assert_eq!(child.parent_span_id, parent.span_id);
        assert_eq!(attr(&child.attributes, "result"), Some(&string("SUCCESS")));
        assert_eq!(
            attr(&child.attributes, "ok"),
            Some(&any_value::Value::BoolValue(true))
        );
    }
}

/// The `service.name` of every resource in the requests.
pub fn service_names(
    requests: &[dspans_otlp::proto::collector::trace::v1::ExportTraceServiceRequest],
) -> Vec<String> {
    requests
        .iter()
        .flat_map(|r| &r.resource_spans)
        .map(|rs| {
            let attrs = rs
                .resource
                .as_ref()
                .map(|r| &r.attributes[..])
                .unwrap_or(&[]);
            match attr(attrs, "service.name") {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                other => panic!("no service.name: {other:?}"),
            }
        })
        .collect()
}
