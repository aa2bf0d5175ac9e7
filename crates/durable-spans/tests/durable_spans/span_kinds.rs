//! A saved span's kind survives its span info: it is exported with the
//! kind it was started with, however it ends. Span info without a kind, or
//! with a kind this version does not know, is internal.

use durable_spans::{DurableTracer, EndOptions, Kind, SavedSpanOptions, SpanInfo};
use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt as _, Tracer as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};

fn tracer() -> (DurableTracer, InMemorySpanExporter) {
    let exporter = InMemorySpanExporter::default();
    let tracer = DurableTracer::builder("zuul")
        .with_simple_exporter(exporter.clone())
        .build();
    (tracer, exporter)
}

/// The span info of a saved span started with `kind`, as another process
/// reads it back from the store.
fn saved(tracer: &DurableTracer, name: &str, kind: SpanKind) -> SpanInfo {
    let info = tracer
        .start_saved_span(name, SavedSpanOptions::new().kind(kind))
        .unwrap();
    SpanInfo::from_json(&info.to_json()).unwrap().unwrap()
}

fn only_span(exporter: &InMemorySpanExporter) -> SpanData {
    let mut spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 1, "one span exported");
    exporter.reset();
    spans.remove(0)
}

#[test]
fn a_server_span_is_exported_as_server_however_it_ends() {
    let (tracer, exporter) = tracer();

    let info = saved(&tracer, "QueueItem", SpanKind::Server);
    assert_eq!(info.kind, Kind::Server);
    tracer.end_saved_span(Some(&info), EndOptions::new());
    assert_eq!(only_span(&exporter).span_kind, SpanKind::Server);

    let info = saved(&tracer, "QueueItem", SpanKind::Server);
    tracer.end_saved_json(&info.to_json(), EndOptions::new());
    assert_eq!(only_span(&exporter).span_kind, SpanKind::Server);

    let info = saved(&tracer, "QueueItem", SpanKind::Server);
    let finished = tracer
        .finish_saved_span(Some(&info), EndOptions::new())
        .unwrap();
    assert_eq!(finished.kind, Kind::Server);
    let kept = durable_spans::FinishedSpan::from_json(&finished.to_json()).unwrap();
    tracer.export(kept);
    assert_eq!(only_span(&exporter).span_kind, SpanKind::Server);
}

#[test]
fn every_kind_survives_restore_and_children_keep_their_own() {
    let (tracer, exporter) = tracer();
    for kind in [
        SpanKind::Internal,
        SpanKind::Server,
        SpanKind::Client,
        SpanKind::Producer,
        SpanKind::Consumer,
    ] {
        let info = saved(&tracer, "Merge", kind.clone());
        let restored = tracer.restore(Some(&info));
        assert_eq!(
            restored.span_info(false).unwrap(),
            info,
            "{kind:?} is kept when the restored span is saved again"
        );
        let cx = restored.into_context();
        tracer.tracer().start_with_context("child", &cx).end();
        cx.span().end();
        let spans = exporter.get_finished_spans().unwrap();
        exporter.reset();
        let names_and_kinds: Vec<_> = spans
            .iter()
            .map(|s| (s.name.as_ref(), s.span_kind.clone()))
            .collect();
        assert_eq!(
            names_and_kinds,
            [("child", SpanKind::Internal), ("Merge", kind)]
        );
    }
}

#[test]
fn internal_span_info_is_zuuls_without_a_kind_key() {
    let (tracer, _) = tracer();
    for options in [
        SavedSpanOptions::new(),
        SavedSpanOptions::new().kind(SpanKind::Internal),
    ] {
        let json = tracer.start_saved_span("Build", options).unwrap().to_json();
        assert!(!json.contains("\"kind\""), "{json}");
    }
    let server = tracer
        .start_saved_span("QueueItem", SavedSpanOptions::new().kind(SpanKind::Server))
        .unwrap()
        .to_json();
    assert!(server.ends_with(r#","kind":"server"}"#), "{server}");
}

#[test]
fn span_info_without_a_known_kind_restores_as_internal() {
    let (tracer, exporter) = tracer();
    let zuul = r#"{"name": "Build", "trace_id": 5, "span_id": 6, "trace_flags": 1,
        "start_time": 1700000000.5, "parent": null"#;
    for (extra, compact) in [
        ("", false),
        (r#", "kind": "gateway""#, false),
        (r#", "kind": "SERVER""#, false),
        (r#", "kind": null"#, false),
        (r#","kind":"gateway""#, true),
    ] {
        let text = if compact {
            format!(
                r#"{{"name":"Build","trace_id":5,"span_id":6,"trace_flags":1,"start_time":7,"parent":null{extra}}}"#
            )
        } else {
            format!("{zuul}{extra}}}")
        };
        let info = SpanInfo::from_json(&text).unwrap().unwrap();
        assert_eq!(info.kind, Kind::Internal, "{text}");
        tracer.end_saved_span(Some(&info), EndOptions::new());
        assert_eq!(only_span(&exporter).span_kind, SpanKind::Internal, "{text}");
    }
    // A kind that is not a name at all is damaged data, as a wrong type in
    // any other key is.
    let damaged = format!(r#"{zuul}, "kind": 2}}"#);
    assert!(SpanInfo::from_json(&damaged).is_err());
}
