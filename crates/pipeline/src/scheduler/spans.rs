//! The scheduler's spans: which are saved, their parents, links and the
//! attributes and status they end with (the span catalogue in
//! docs/spans.md).
//!
//! Every saved span ends with `dspans.started_by` (the scheduler that
//! started it, kept in its object) and `dspans.ended_by` (the one ending
//! it), so a trace shows the handovers. Failed work (a result whose CI/CD
//! value is `failure`, `error` or `timeout`) ends with status ERROR, a short
//! description and `error.type`, Zuul's result; anything else leaves the
//! status unset.

use durable_spans::{
    DurableTracer, EndOptions, FinishedSpan, SavedSpanOptions, SpanContext, SpanInfo, Timestamp,
};
use opentelemetry::trace::{Link, SpanKind, Status, TraceContextExt as _};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};

use crate::config::ProjectConfig;
use crate::model::{
    Build, BuildResult, BuildSet, ChangeRef, ItemResult, MergeResult, QueueItem, WorkResult,
};

/// A link to a saved context with one attribute.
pub fn link(ctx: &SpanContext, key: &'static str, value: String) -> Link {
    Link::new(ctx.to_otel(true), vec![KeyValue::new(key, value)], 0)
}

/// Starts a saved span as a child of `parent` (nothing, or a saved span).
/// The QueueItem span, the pipeline run, has kind SERVER, as the CI/CD
/// conventions ask; the others are INTERNAL.
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
    let kind = match name {
        "QueueItem" => SpanKind::Server,
        _ => SpanKind::Internal,
    };
    let mut options = SavedSpanOptions::new()
        .parent(cx)
        .start_time(start)
        .kind(kind);
    options.links = links;
    // No start attributes are given, so starting cannot be refused.
    tracer.start_saved_span(name, options).ok()
}

/// The scheduler ending saved spans: its tracer, and its name for
/// `dspans.ended_by`.
#[derive(Clone, Copy)]
pub struct Ender<'a> {
    /// Finishes the spans (for `Ledger::commit`).
    pub tracer: &'a DurableTracer,
    /// The scheduler's name.
    pub name: &'a str,
}

impl Ender<'_> {
    /// Ends `span` with `attributes`, the handover attributes, and for a
    /// failed `result`, status ERROR with `description` and `error.type`.
    fn finish(
        &self,
        span: Option<&SpanInfo>,
        mut attributes: Vec<KeyValue>,
        started_by: &Option<String>,
        result: impl WorkResult,
        description: impl FnOnce() -> String,
    ) -> Option<FinishedSpan> {
        if let Some(name) = started_by {
            attributes.push(KeyValue::new("dspans.started_by", name.clone()));
        }
        attributes.push(KeyValue::new("dspans.ended_by", self.name.to_string()));
        let mut options = EndOptions::new();
        if result.is_failure() {
            attributes.push(KeyValue::new("error.type", result.as_str()));
            options = options.status(Status::error(description()));
        }
        self.tracer
            .finish_saved_span(span, options.attributes(attributes))
    }
}

fn strings(values: impl IntoIterator<Item = String>) -> Value {
    Value::Array(Array::String(
        values.into_iter().map(StringValue::from).collect(),
    ))
}

/// The Gerrit ref of a change's patchset, `refs/changes/NN/NUMBER/PATCHSET`
/// (NN: the number's last two digits).
fn change_ref(change: &ChangeRef) -> String {
    format!(
        "refs/changes/{:02}/{}/{}",
        change.number % 100,
        change.number,
        change.patchset
    )
}

/// Ends the QueueItem span, the pipeline run, with Zuul's attributes and
/// the CI/CD and VCS conventions' (`vcs.repository.url.full` when the
/// project names a repository, `vcs.ref.head.revision` when the merger
/// made a commit).
pub fn finish_queue_item(
    ender: Ender<'_>,
    item: &QueueItem,
    buildset: &BuildSet,
    project: Option<&ProjectConfig>,
    result: ItemResult,
) -> Option<FinishedSpan> {
    let change: &ChangeRef = &item.change;
    let mut attributes = vec![
        KeyValue::new("zuul_event_id", item.zuul_event_id.clone()),
        KeyValue::new("zuul_tenant", "default"),
        KeyValue::new("zuul_pipeline", item.pipeline.clone()),
        KeyValue::new("ref_project", strings([change.project.clone()])),
        KeyValue::new("ref_number", strings([change.number.to_string()])),
        KeyValue::new("ref_patchset", strings([change.patchset.to_string()])),
        KeyValue::new("result", result.as_str()),
        KeyValue::new("cicd.pipeline.name", item.pipeline.clone()),
        KeyValue::new("cicd.pipeline.run.id", item.uuid.clone()),
        KeyValue::new("cicd.pipeline.result", result.cicd_result()),
        KeyValue::new("vcs.repository.name", change.project.clone()),
        KeyValue::new("vcs.change.id", change.number.to_string()),
        KeyValue::new("vcs.ref.head.name", change_ref(change)),
        KeyValue::new("vcs.ref.base.name", change.branch.clone()),
    ];
    if let Some(url) = project.and_then(ProjectConfig::repository_url) {
        attributes.push(KeyValue::new("vcs.repository.url.full", url));
    }
    if let Some(commit) = &buildset.merge_commit {
        attributes.push(KeyValue::new("vcs.ref.head.revision", commit.clone()));
    }
    ender.finish(
        item.span_info.as_ref(),
        attributes,
        &item.started_by,
        result,
        || {
            format!(
                "{} {} in {}",
                change.short(),
                result.as_str(),
                item.pipeline
            )
        },
    )
}

/// Ends the BuildSet span. A gate reset (`RESET`) is a cancellation, not
/// an error.
pub fn finish_buildset(
    ender: Ender<'_>,
    buildset: &BuildSet,
    result: ItemResult,
) -> Option<FinishedSpan> {
    let attributes = vec![KeyValue::new("result", result.as_str())];
    ender.finish(
        buildset.span_info.as_ref(),
        attributes,
        &buildset.started_by,
        result,
        || format!("build set {}", result.as_str()),
    )
}

/// Ends the Build span, the task run; `cicd.pipeline.task.run.url.full`
/// is the URL of the build's log, when its executor kept one.
pub fn finish_build(ender: Ender<'_>, build: &Build, result: BuildResult) -> Option<FinishedSpan> {
    let mut attributes = vec![
        KeyValue::new("uuid", build.uuid.clone()),
        KeyValue::new("job", build.job.clone()),
        KeyValue::new("buildset_uuid", build.buildset_uuid.clone()),
        KeyValue::new("zuul_event_id", build.zuul_event_id.clone()),
        KeyValue::new("result", result.as_str()),
        KeyValue::new("cicd.pipeline.task.name", build.job.clone()),
        KeyValue::new("cicd.pipeline.task.run.id", build.uuid.clone()),
        KeyValue::new("cicd.pipeline.task.run.result", result.cicd_result()),
    ];
    if let Some(url) = &build.log_url {
        attributes.push(KeyValue::new(
            "cicd.pipeline.task.run.url.full",
            url.clone(),
        ));
    }
    ender.finish(
        build.span_info.as_ref(),
        attributes,
        &build.started_by,
        result,
        || match build.exit_code {
            Some(code) if result == BuildResult::Failure => {
                format!("job {} exited with {code}", build.job)
            }
            _ => format!("job {} {}", build.job, result.as_str()),
        },
    )
}

/// What the scheduler knows of a merge request when its result comes.
pub struct MergeEnd<'a> {
    /// The request's saved `Merge` span.
    pub span: Option<&'a SpanInfo>,
    /// The scheduler that started it.
    pub started_by: &'a Option<String>,
    /// The merge request's uuid.
    pub uuid: &'a str,
    /// Its build set.
    pub buildset_uuid: &'a str,
    /// The item's trigger event id.
    pub zuul_event_id: &'a str,
    /// What the merger said, for the error description.
    pub message: Option<&'a str>,
}

/// Ends the Merge span, with its end attributes.
pub fn finish_merge(
    ender: Ender<'_>,
    merge: &MergeEnd<'_>,
    result: MergeResult,
) -> Option<FinishedSpan> {
    let attributes = vec![
        KeyValue::new("uuid", merge.uuid.to_string()),
        KeyValue::new("buildset_uuid", merge.buildset_uuid.to_string()),
        KeyValue::new("zuul_event_id", merge.zuul_event_id.to_string()),
        KeyValue::new("result", result.as_str()),
    ];
    ender.finish(
        merge.span,
        attributes,
        merge.started_by,
        result,
        || match merge.message {
            Some(message) => format!("{}: {message}", result.as_str()),
            None => result.as_str().to_string(),
        },
    )
}
