//! The scheduler's spans: which are saved, their parents, links and the
//! attributes they end with (the span catalogue in docs/spans.md).

use durable_spans::{
    DurableTracer, EndOptions, FinishedSpan, SavedSpanOptions, SpanContext, SpanInfo, Timestamp,
};
use opentelemetry::trace::{Link, TraceContextExt as _};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};

use crate::model::{Build, BuildSet, ChangeRef, QueueItem};

/// A link to a saved context with one attribute.
pub fn link(ctx: &SpanContext, key: &'static str, value: String) -> Link {
    Link::new(ctx.to_otel(true), vec![KeyValue::new(key, value)], 0)
}

/// Starts a saved span as a child of `parent` (nothing, or a saved span).
pub fn start_child(
    tracer: &DurableTracer,
    name: &str,
    parent: Option<&SpanInfo>,
    start: Timestamp,
    links: Vec<Link>,
) -> Option<SpanInfo> {
    let cx = match parent {
        Some(info) => Context::new().with_span(tracer.restore(Some(info))),
        None => Context::new(),
    };
    let mut options = SavedSpanOptions::new().parent(cx).start_time(start);
    options.links = links;
    // No start attributes are given, so starting cannot be refused.
    tracer.start_saved_span(name, options).ok()
}

fn strings(values: impl IntoIterator<Item = String>) -> Value {
    Value::Array(Array::String(
        values.into_iter().map(StringValue::from).collect(),
    ))
}

fn started_by(attributes: &mut Vec<KeyValue>, by: &Option<String>) {
    if let Some(name) = by {
        attributes.push(KeyValue::new("dspans.started_by", name.clone()));
    }
}

/// Ends the QueueItem span (to be written by `Ledger::commit`), with its
/// end attributes.
pub fn finish_queue_item(
    tracer: &DurableTracer,
    item: &QueueItem,
    result: &str,
    cicd_result: &str,
) -> Option<FinishedSpan> {
    let change: &ChangeRef = &item.change;
    let attributes = vec![
        KeyValue::new("zuul_event_id", item.zuul_event_id.clone()),
        KeyValue::new("zuul_tenant", "default"),
        KeyValue::new("zuul_pipeline", item.pipeline.clone()),
        KeyValue::new("ref_project", strings([change.project.clone()])),
        KeyValue::new("ref_number", strings([change.number.to_string()])),
        KeyValue::new("ref_patchset", strings([change.patchset.to_string()])),
        KeyValue::new("cicd.pipeline.name", item.pipeline.clone()),
        KeyValue::new("cicd.pipeline.result", cicd_result.to_string()),
        KeyValue::new("result", result.to_string()),
    ];
    tracer.finish_saved_span(
        item.span_info.as_ref(),
        EndOptions::new().attributes(attributes),
    )
}

/// Ends the BuildSet span, with its end attributes.
pub fn finish_buildset(
    tracer: &DurableTracer,
    buildset: &BuildSet,
    result: &str,
) -> Option<FinishedSpan> {
    let attributes = vec![KeyValue::new("result", result.to_string())];
    tracer.finish_saved_span(
        buildset.span_info.as_ref(),
        EndOptions::new().attributes(attributes),
    )
}

/// Ends the Build span, with its end attributes.
pub fn finish_build(
    tracer: &DurableTracer,
    build: &Build,
    result: &str,
    cicd_result: &str,
) -> Option<FinishedSpan> {
    let attributes = vec![
        KeyValue::new("uuid", build.uuid.clone()),
        KeyValue::new("job", build.job.clone()),
        KeyValue::new("buildset_uuid", build.buildset_uuid.clone()),
        KeyValue::new("zuul_event_id", build.zuul_event_id.clone()),
        KeyValue::new("result", result.to_string()),
        KeyValue::new("cicd.pipeline.task.name", build.job.clone()),
        KeyValue::new("cicd.pipeline.task.run.result", cicd_result.to_string()),
    ];
    tracer.finish_saved_span(
        build.span_info.as_ref(),
        EndOptions::new().attributes(attributes),
    )
}

/// Ends the Merge span, with its end attributes.
pub fn finish_merge(
    tracer: &DurableTracer,
    span: Option<&SpanInfo>,
    by: &Option<String>,
    uuid: &str,
    buildset_uuid: &str,
    zuul_event_id: &str,
    result: &str,
) -> Option<FinishedSpan> {
    let attributes = vec![
        KeyValue::new("uuid", uuid.to_string()),
        KeyValue::new("buildset_uuid", buildset_uuid.to_string()),
        KeyValue::new("zuul_event_id", zuul_event_id.to_string()),
        KeyValue::new("result", result.to_string()),
    ];
    let mut attributes = attributes;
    started_by(&mut attributes, by);
    tracer.finish_saved_span(span, EndOptions::new().attributes(attributes))
}
