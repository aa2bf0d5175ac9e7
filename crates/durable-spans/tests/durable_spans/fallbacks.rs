//! Missing or bad span data: a non-recording span, one warning, nothing
//! exported; start attributes refused unless persisted.

use durable_spans::{DurableTracer, EndOptions, SavedSpanOptions, SpanInfo, StartError};
use opentelemetry::trace::{Span as _, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::InMemorySpanExporter;
use tracing_subscriber::layer::SubscriberExt as _;

thread_local! {
    static WARNINGS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts WARN events emitted on this thread while `f` runs. One global
/// subscriber for the whole test binary, so that tracing's per-callsite
/// interest cache never hides an event from a test running in parallel.
fn warnings_during(f: impl FnOnce()) -> usize {
    struct CountWarnings;
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountWarnings {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if *event.metadata().level() == tracing::Level::WARN {
                WARNINGS.with(|n| n.set(n.get() + 1));
            }
        }
    }
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::registry().with(CountWarnings);
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
    });
    let before = WARNINGS.with(|n| n.get());
    f();
    WARNINGS.with(|n| n.get()) - before
}

fn tracer() -> (DurableTracer, InMemorySpanExporter) {
    let exporter = InMemorySpanExporter::default();
    let tracer = DurableTracer::builder("zuul")
        .with_simple_exporter(exporter.clone())
        .build();
    (tracer, exporter)
}

#[test]
fn bad_data_gives_one_warning_and_a_span_whose_children_start_new_traces() {
    let (tracer, exporter) = tracer();
    let inputs = [
        "null",
        r#"{"name": "x", "span_id": 1, "trace_flags": 1, "start_time": 1}"#,
        r#"{"name": "x", "trace_id": 0, "span_id": 1, "trace_flags": 1, "start_time": 1}"#,
        r#"{"name": "x", "trace_id": 1, "span_id": 1, "trace_flags": 1, "start_time": "soon"}"#,
        "not json at all",
    ];
    for input in inputs {
        let mut restored = None;
        let warnings = warnings_during(|| restored = Some(tracer.restore_json(input)));
        assert_eq!(warnings, 1, "one warning for {input}");
        let restored = restored.unwrap();
        assert!(!restored.is_recording(), "{input}");
        assert!(!restored.span_context().is_valid(), "{input}");
        let cx = Context::new().with_span(restored);
        tracer.tracer().start_with_context("child", &cx).end();
        cx.span().end();
    }
    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), inputs.len(), "only the children are exported");
    let traces: std::collections::HashSet<_> =
        spans.iter().map(|s| s.span_context.trace_id()).collect();
    assert_eq!(traces.len(), inputs.len(), "each child is a new root trace");
    assert!(spans
        .iter()
        .all(|s| s.parent_span_id == opentelemetry::trace::SpanId::INVALID));
}

#[test]
fn ending_missing_data_does_nothing() {
    let (tracer, exporter) = tracer();
    tracer.end_saved_span(None, EndOptions::new());
    assert!(tracer.finish_saved_span(None, EndOptions::new()).is_none());
    assert!(exporter.get_finished_spans().unwrap().is_empty());
}

#[test]
fn start_attributes_are_refused_unless_persisted() {
    let (tracer, exporter) = tracer();
    let mut options = SavedSpanOptions::new();
    options.attributes = vec![KeyValue::new("startattr", "bar")];
    let err = tracer
        .start_saved_span("parent", options.clone())
        .unwrap_err();
    assert_eq!(
        err,
        StartError::AttributesNotPersisted {
            name: "parent".into(),
            count: 1
        }
    );
    assert!(err.to_string().contains("include_attributes"));
    // Nothing was started, so nothing can leak or be exported later.
    tracer.force_flush().unwrap();
    assert!(exporter.get_finished_spans().unwrap().is_empty());

    options.include_attributes = true;
    let info = tracer.start_saved_span("parent", options).unwrap();
    assert_eq!(info.attributes, vec![KeyValue::new("startattr", "bar")]);
    assert!(info.to_json().contains("\"startattr\":\"bar\""));
}

#[test]
fn restored_span_is_live_and_ends_once() {
    let (tracer, exporter) = tracer();
    let info = tracer
        .start_saved_span("QueueItem", SavedSpanOptions::new())
        .unwrap();
    let text = info.to_json();
    let mut span = tracer.restore(SpanInfo::from_json(&text).unwrap().as_ref());
    span.set_attribute(KeyValue::new("zuul_pipeline", "gate"));
    span.add_event("dequeued", vec![]);
    span.set_status(opentelemetry::trace::Status::error("lost"));
    span.end();
    span.end();
    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(
        spans.len(),
        1,
        "a restored span exports once however often it is ended"
    );
    assert_eq!(spans[0].events.len(), 1);
    assert_eq!(
        spans[0].attributes,
        vec![KeyValue::new("zuul_pipeline", "gate")]
    );
    assert_eq!(
        u64::from_be_bytes(spans[0].span_context.span_id().to_bytes()),
        info.span_id
    );
    // Dropping a restored span does not end it.
    drop(tracer.restore(Some(&info)));
    assert_eq!(exporter.get_finished_spans().unwrap().len(), 1);
}

#[test]
fn unsampled_saved_spans_are_not_exported() {
    let exporter = InMemorySpanExporter::default();
    let tracer = DurableTracer::builder("zuul")
        .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOff)
        .with_simple_exporter(exporter.clone())
        .build();
    let info = tracer
        .start_saved_span("QueueItem", SavedSpanOptions::new())
        .unwrap();
    assert_eq!(info.trace_flags & 1, 0);
    tracer.end_saved_span(Some(&info), EndOptions::new());
    assert!(exporter.get_finished_spans().unwrap().is_empty());
}

#[test]
fn finished_span_survives_json_and_exports_later() {
    let (tracer, exporter) = tracer();
    let info = tracer
        .start_saved_span("Build", SavedSpanOptions::new())
        .unwrap();
    let finished = tracer
        .finish_saved_span(
            Some(&info),
            EndOptions::new().attributes(vec![KeyValue::new("result", "SUCCESS")]),
        )
        .unwrap();
    assert!(
        exporter.get_finished_spans().unwrap().is_empty(),
        "finishing does not export"
    );
    let stored = finished.to_json();
    let (other_process, other_exporter) = self::tracer();
    other_process.export(durable_spans::FinishedSpan::from_json(&stored).unwrap());
    let spans = other_exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        spans[0].attributes,
        vec![KeyValue::new("result", "SUCCESS")]
    );
    assert_eq!(spans[0].start_time, info.start_time.to_system_time());
}
