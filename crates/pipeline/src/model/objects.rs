//! The stored object types. See the module documentation of
//! [`crate::model`] for where each one lives and which span data it carries.

use std::collections::BTreeMap;

use durable_spans::{SpanContext, SpanInfo, Timestamp};
use serde::{Deserialize, Serialize};

use super::{
    BuildResult, BuildSetState, BuildState, ChangeRef, ItemResult, ItemState, MergeResult,
    StoredObject,
};

/// A request to enqueue a change into a pipeline, written by
/// `dspans enqueue`. Carries the context of its `TriggerEvent` span, which
/// the scheduler's `EventProcessing` span links to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerEvent {
    /// The event id, carried by every object and span that follows.
    pub zuul_event_id: String,
    /// Target pipeline.
    pub pipeline: String,
    /// The change to enqueue.
    pub change: ChangeRef,
    /// When the event was written.
    pub timestamp: Timestamp,
    /// Context of the `TriggerEvent` span.
    #[serde(default, with = "crate::lenient_context")]
    pub span_context: Option<SpanContext>,
}

/// An ordered change queue of a pipeline: the uuids of its items, head
/// first. In a dependent pipeline each item is tested on top of the items
/// ahead of it in its queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ChangeQueue {
    /// Pipeline name.
    pub pipeline: String,
    /// Queue name (see `Config::change_queue`).
    pub name: String,
    /// Item uuids, head first.
    #[serde(default)]
    pub items: Vec<String>,
}

/// One change in a pipeline queue. Its `QueueItem` span starts at enqueue
/// (`start_time = enqueue_time`) and is ended by whichever scheduler
/// dequeues it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueItem {
    /// Item uuid.
    pub uuid: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Change queue name.
    pub queue: String,
    /// The change.
    pub change: ChangeRef,
    /// Id of the trigger event that enqueued it.
    pub zuul_event_id: String,
    /// When it was enqueued.
    pub enqueue_time: Timestamp,
    /// Life-cycle state.
    #[serde(default)]
    pub state: ItemState,
    /// Uuid of the current build set.
    pub current_buildset: String,
    /// Uuid of the build set replaced by the last gate reset, if any.
    #[serde(default)]
    pub previous_buildset: Option<String>,
    /// How many gate resets this item went through.
    #[serde(default)]
    pub resets: u32,
    /// The item's result, once known.
    #[serde(default)]
    pub result: Option<ItemResult>,
    /// When it was reported.
    #[serde(default)]
    pub report_time: Option<Timestamp>,
    /// The scheduler that started this object's span (exported as the
    /// span attribute `dspans.started_by`, so a trace shows which spans
    /// another process ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    /// The saved `QueueItem` span.
    #[serde(default, with = "durable_spans::lenient")]
    pub span_info: Option<SpanInfo>,
}

/// The current set of builds of an item, and its merge state. A gate reset
/// replaces it with a new one (new uuid) whose span links to this one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildSet {
    /// Build set uuid.
    pub uuid: String,
    /// The item it belongs to.
    pub item_uuid: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Id of the trigger event of its item.
    pub zuul_event_id: String,
    /// Life-cycle state.
    #[serde(default)]
    pub state: BuildSetState,
    /// Uuids of the items ahead this build set is tested on top of
    /// (dependent pipelines; empty otherwise).
    #[serde(default)]
    pub items_ahead: Vec<String>,
    /// Uuid of the outstanding or last merge request.
    #[serde(default)]
    pub merge_request: Option<String>,
    /// Id of that request in the merger queue (where its saved `Merge`
    /// span waits for the result).
    #[serde(default)]
    pub merge_request_id: Option<String>,
    /// The merge result, once known.
    #[serde(default)]
    pub merge_result: Option<MergeResult>,
    /// The commit the merger made, when it made one (a project with a
    /// `repo`): the item's `vcs.ref.head.revision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_commit: Option<String>,
    /// Job names to run, in config order.
    #[serde(default)]
    pub jobs: Vec<String>,
    /// Job name to the uuid of its current build (a retry replaces it).
    #[serde(default)]
    pub builds: BTreeMap<String, String>,
    /// Uuid of the build set this one replaced after a gate reset.
    #[serde(default)]
    pub previous_buildset: Option<String>,
    /// The result, once known.
    #[serde(default)]
    pub result: Option<ItemResult>,
    /// The scheduler that started this object's span (exported as the
    /// span attribute `dspans.started_by`, so a trace shows which spans
    /// another process ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    /// The saved `BuildSet` span (child of the item's span).
    #[serde(default, with = "durable_spans::lenient")]
    pub span_info: Option<SpanInfo>,
}

/// One run of a job for a build set. Its `Build` span starts at
/// `execute_time` and is ended by the scheduler on the build's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Build {
    /// Build uuid.
    pub uuid: String,
    /// Job name.
    pub job: String,
    /// The build set it belongs to.
    pub buildset_uuid: String,
    /// The item it belongs to.
    pub item_uuid: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Id of the trigger event of its item.
    pub zuul_event_id: String,
    /// Life-cycle state.
    #[serde(default)]
    pub state: BuildState,
    /// When the build was requested.
    pub execute_time: Timestamp,
    /// Id of its request in the executor queue.
    #[serde(default)]
    pub request_id: Option<String>,
    /// Retries so far: 0 for the first attempt.
    #[serde(default)]
    pub retry: u32,
    /// Executor that ran it.
    #[serde(default)]
    pub executor: Option<String>,
    /// When the command started.
    #[serde(default)]
    pub start_time: Option<Timestamp>,
    /// When the command ended.
    #[serde(default)]
    pub end_time: Option<Timestamp>,
    /// The command's exit code, when it exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// The `file://` URL of its log, when its executor kept one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
    /// The result, once known.
    #[serde(default)]
    pub result: Option<BuildResult>,
    /// The scheduler that started this object's span (exported as the
    /// span attribute `dspans.started_by`, so a trace shows which spans
    /// another process ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    /// The saved `Build` span (child of the build set's span).
    #[serde(default, with = "durable_spans::lenient")]
    pub span_info: Option<SpanInfo>,
}

/// An executor queue entry. The executor's `JobExecution` span is a remote
/// child of `span_context` (the `Build` span's context).
///
/// It names its job and carries no command: an executor runs the `run` and
/// `timeout_s` of the job of that name in its own config, so whoever can
/// write the store cannot make executors run anything else. Keys written
/// by older versions (`run`, `timeout_s`) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildRequest {
    /// Uuid of the build.
    pub build_uuid: String,
    /// Job name: the `[[job]]` of the executor's config to run.
    pub job: String,
    /// Pipeline name (its result queue gets the result event).
    pub pipeline: String,
    /// The change under test.
    pub change: ChangeRef,
    /// The build set.
    pub buildset_uuid: String,
    /// The item.
    pub item_uuid: String,
    /// Id of the trigger event of the item.
    pub zuul_event_id: String,
    /// Which attempt this is (0 for the first).
    #[serde(default)]
    pub retry: u32,
    /// Context of the `Build` span.
    #[serde(default, with = "crate::lenient_context")]
    pub span_context: Option<SpanContext>,
}

/// A merger queue entry. It carries the saved `Merge` span (which the
/// scheduler ends on the result) and that span's context, under which the
/// merger starts `MergerJob`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeRequest {
    /// Merge request uuid.
    pub uuid: String,
    /// The build set.
    pub buildset_uuid: String,
    /// The item.
    pub item_uuid: String,
    /// Pipeline name (its result queue gets the result event).
    pub pipeline: String,
    /// Id of the trigger event of the item.
    pub zuul_event_id: String,
    /// Changes to merge in order: the items ahead, then the item's own.
    pub changes: Vec<ChangeRef>,
    /// The scheduler that started this object's span (exported as the
    /// span attribute `dspans.started_by`, so a trace shows which spans
    /// another process ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    /// The saved `Merge` span.
    #[serde(default, with = "durable_spans::lenient")]
    pub span_info: Option<SpanInfo>,
    /// Context of the `Merge` span, for the merger's remote child.
    #[serde(default, with = "crate::lenient_context")]
    pub span_context: Option<SpanContext>,
}

/// A build's outcome, written by the executor with the request's state in
/// one atomic operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildCompleted {
    /// Uuid of the build.
    pub build_uuid: String,
    /// The build set.
    pub buildset_uuid: String,
    /// The item.
    pub item_uuid: String,
    /// Job name.
    pub job: String,
    /// The result.
    pub result: BuildResult,
    /// Exit code, when the command exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// When the command started.
    pub start_time: Timestamp,
    /// When it ended.
    pub end_time: Timestamp,
    /// Executor name.
    pub executor: String,
    /// The `file://` URL of the build's log on the executor's host, when
    /// it kept one (see `[logs]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
}

/// A merge's outcome, written by the merger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeCompleted {
    /// Merge request uuid.
    pub merge_request: String,
    /// The build set.
    pub buildset_uuid: String,
    /// The item.
    pub item_uuid: String,
    /// The result.
    pub result: MergeResult,
    /// The merged commit, when a real repository was merged.
    #[serde(default)]
    pub commit: Option<String>,
    /// Detail for a conflict or error.
    #[serde(default)]
    pub message: Option<String>,
    /// Merger name.
    pub merger: String,
}

/// An event in a pipeline's result queue. JSON:
/// `{"build_completed": {...}}` or `{"merge_completed": {...}}`
/// (externally tagged, which serde decodes without buffering).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultEvent {
    /// A build finished.
    BuildCompleted(BuildCompleted),
    /// A merge finished.
    MergeCompleted(MergeCompleted),
}

impl ResultEvent {
    /// Uuid of the item the event is about.
    pub fn item_uuid(&self) -> &str {
        match self {
            ResultEvent::BuildCompleted(e) => &e.item_uuid,
            ResultEvent::MergeCompleted(e) => &e.item_uuid,
        }
    }

    /// Uuid of the build set the event is about (a stale one after a gate
    /// reset is ignored by the scheduler).
    pub fn buildset_uuid(&self) -> &str {
        match self {
            ResultEvent::BuildCompleted(e) => &e.buildset_uuid,
            ResultEvent::MergeCompleted(e) => &e.buildset_uuid,
        }
    }
}

/// One build's line in a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildReport {
    /// Job name.
    pub job: String,
    /// Build uuid.
    pub uuid: String,
    /// Its result.
    pub result: BuildResult,
    /// Retries it took.
    #[serde(default)]
    pub retry: u32,
    /// The `file://` URL of its log, when its executor kept one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
}

/// The record of an item's report (also logged as a line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Item uuid.
    pub item_uuid: String,
    /// Pipeline name.
    pub pipeline: String,
    /// The change.
    pub change: ChangeRef,
    /// Id of the trigger event of the item.
    pub zuul_event_id: String,
    /// The build set reported.
    pub buildset_uuid: String,
    /// The item's result.
    pub result: ItemResult,
    /// Its builds, in job order.
    #[serde(default)]
    pub builds: Vec<BuildReport>,
    /// When the item was enqueued.
    pub enqueue_time: Timestamp,
    /// When it was reported.
    pub report_time: Timestamp,
    /// A human-readable summary.
    #[serde(default)]
    pub message: String,
}

macro_rules! stored {
    ($($t:ident),*) => {
        $(impl StoredObject for $t {
            const KIND: &'static str = stringify!($t);
        })*
    };
}

stored!(
    TriggerEvent,
    ChangeQueue,
    QueueItem,
    BuildSet,
    Build,
    BuildRequest,
    MergeRequest,
    ResultEvent,
    Report
);
