//! The executor: claims build requests from the executor queue, runs each
//! job's command and reports the result to the pipeline's result queue.
//!
//! Contract with the scheduler:
//!
//! - **Request**: a [`BuildRequest`] submitted as is (its JSON text) to the
//!   [`JobQueue`] at [`Layout::executor_queue`]. A request holding the JSON
//!   text as a string (`StoredObject::to_embedded`) is read too.
//! - **Claim**: exclusive ([`JobQueue::claim_next`]); only the winner starts
//!   spans: `JobExecution`, a remote child of the request's `span_context`
//!   (attribute `hostname`), and under it `JobRun` (attribute `exit_code`:
//!   the command's exit code, `-1` when it was killed or never started).
//! - **Run**: `sh -c <run>` in a fresh scratch directory (deleted after;
//!   an executor starting up deletes those that killed executors on the
//!   same machine left), in its own process group, stdin from `/dev/null`,
//!   output to a log file outside that directory. Environment:
//!   `DSPANS_PROJECT`, `DSPANS_CHANGE`, `DSPANS_PATCHSET`, `DSPANS_BRANCH`,
//!   `DSPANS_PIPELINE`, `DSPANS_JOB`, `DSPANS_BUILD` (build uuid),
//!   `DSPANS_BUILDSET`, `DSPANS_ITEM`, `DSPANS_EVENT_ID`, `DSPANS_RETRY`, and
//!   `TRACEPARENT` (the `JobRun` span). Exit 0 → `SUCCESS`, other exit → `FAILURE`, `timeout_s` passed →
//!   the group is killed, `TIMED_OUT`; the command cannot be started →
//!   `ERROR`.
//! - **Result**: both spans are ended (handed to the exporter) first; then
//!   one atomic multi-operation appends [`ResultEvent::BuildCompleted`] to
//!   [`Layout::result_events`] of the request's pipeline and marks the
//!   request `completed` (its record's `result` is `{"result": "<RESULT>"}`).
//! - **Undecodable request**: completed with `{"result": "ERROR", "error":
//!   …}`; when its `pipeline` and `build_uuid` can still be read, an
//!   `ERROR` [`BuildCompleted`] is written with it, so the build ends.
//! - **Shutdown**: no new claims; the build in hand is finished if it ends
//!   within [`SHUTDOWN_GRACE`], otherwise its process group is killed, its
//!   spans end with an error status, and the request is handed back
//!   (`requested` again, lock released) for another executor. No result is
//!   written for a handed-back build.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dspans_store::recipes::{Claim, JobQueue};
use dspans_store::Store;
use durable_spans::{span_context_of, ChildOptions, DurableTracer, Timestamp};
use opentelemetry::trace::{Span as _, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};

use crate::config::Config;
use crate::layout::Layout;
use crate::model::{BuildCompleted, BuildRequest, BuildResult, ModelError, ResultEvent};
use crate::process::{self, Abort, Outcome, OutputMode};
use crate::scratch;
use crate::worker::{decode_request, serve, PartialRequest, Worker};

pub use crate::worker::SHUTDOWN_GRACE;

/// A worker of the executor queue. Cheap: one claimed build at a time, run
/// as many instances (tasks or processes) as wanted.
#[derive(Debug, Clone)]
pub struct Executor {
    worker: Worker,
}

impl Executor {
    /// An executor named `name` (its claims and results carry the name).
    pub fn new(
        config: impl Into<Arc<Config>>,
        store: Arc<dyn Store>,
        tracer: DurableTracer,
        name: impl Into<String>,
    ) -> Executor {
        Executor {
            worker: Worker::new(config.into(), store, tracer, name.into()),
        }
    }

    /// Uses another store layout (default [`Layout::default`]).
    pub fn with_layout(mut self, layout: Layout) -> Executor {
        self.worker.layout = layout;
        self
    }

    /// The executor's name.
    pub fn name(&self) -> &str {
        &self.worker.name
    }

    /// The configuration it was given.
    pub fn config(&self) -> &Config {
        &self.worker.config
    }

    /// Claims and runs builds until `shutdown` resolves (see the module
    /// documentation for what happens to the build in hand).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let queue = JobQueue::new(
            self.worker.store.clone(),
            self.worker.layout.executor_queue(),
        );
        tracing::info!(executor = %self.worker.name, "executor started");
        scratch::remove_abandoned("build");
        serve(&queue, &self.worker.name, shutdown, |claim, abort| {
            self.execute(&queue, claim, abort)
        })
        .await;
        tracing::info!(executor = %self.worker.name, "executor stopped");
    }

    async fn execute(&self, queue: &JobQueue, claim: Claim, abort: Abort) {
        let request: BuildRequest = match decode_request(&claim.job.record) {
            Ok(request) => request,
            Err(error) => return self.reject(queue, claim, error).await,
        };
        tracing::info!(
            executor = %self.worker.name, request = %claim.job.id, build = %request.build_uuid,
            job = %request.job, "build started"
        );
        let exec = self.worker.tracer.start_span_in_context(
            request.span_context.as_ref(),
            "JobExecution",
            ChildOptions {
                attributes: vec![KeyValue::new("hostname", self.worker.hostname.clone())],
                ..ChildOptions::default()
            },
        );
        let exec_cx = Context::new().with_span(exec);
        let mut run_span = self
            .worker
            .tracer
            .tracer()
            .start_with_context("JobRun", &exec_cx);
        let traceparent = span_context_of(&run_span).to_traceparent();

        let start_time = Timestamp::now();
        let (outcome, detail) = self.run_command(&request, &traceparent, &abort).await;
        let end_time = Timestamp::now();

        let (result, exit_code) = match &outcome {
            Outcome::Exited(0) => (BuildResult::Success, Some(0)),
            Outcome::Exited(code) => (BuildResult::Failure, Some(*code)),
            Outcome::TimedOut => (BuildResult::TimedOut, None),
            Outcome::SpawnFailed(_) | Outcome::Aborted => (BuildResult::Error, None),
        };
        run_span.set_attribute(KeyValue::new(
            "exit_code",
            i64::from(exit_code.unwrap_or(-1)),
        ));
        if let Some(detail) = &detail {
            run_span.set_status(Status::error(detail.clone()));
            exec_cx.span().set_status(Status::error(detail.clone()));
        }
        run_span.end();
        exec_cx.span().end();

        if outcome == Outcome::Aborted {
            tracing::warn!(
                executor = %self.worker.name, request = %claim.job.id, build = %request.build_uuid,
                "build interrupted by shutdown; handing the request back"
            );
            if let Err(error) = queue.release(claim).await {
                tracing::error!(%error, "cannot hand the build request back");
            }
            return;
        }
        let event = BuildCompleted {
            build_uuid: request.build_uuid.clone(),
            buildset_uuid: request.buildset_uuid.clone(),
            item_uuid: request.item_uuid.clone(),
            job: request.job.clone(),
            result,
            exit_code,
            start_time,
            end_time,
            executor: self.worker.name.clone(),
        };
        tracing::info!(
            executor = %self.worker.name, build = %request.build_uuid, job = %request.job,
            %result, ?exit_code, "build completed"
        );
        let outcome = serde_json::json!({ "result": result.as_str() });
        let event = ResultEvent::BuildCompleted(event);
        self.worker
            .complete(queue, claim, &request.pipeline, &event, outcome)
            .await;
    }

    /// Runs the request's command; returns how it ended and, for anything
    /// but a plain exit, why.
    async fn run_command(
        &self,
        request: &BuildRequest,
        traceparent: &str,
        abort: &Abort,
    ) -> (Outcome, Option<String>) {
        let scratch = match scratch::create("build") {
            Ok(dir) => dir,
            Err(e) => {
                let reason = format!("cannot create a scratch directory: {e}");
                return (Outcome::SpawnFailed(reason.clone()), Some(reason));
            }
        };
        let work = scratch.path().join("work");
        let log = scratch.path().join("output.log");
        if let Err(e) = std::fs::create_dir(&work) {
            let reason = format!("cannot create {}: {e}", work.display());
            return (Outcome::SpawnFailed(reason.clone()), Some(reason));
        }
        let change = &request.change;
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(&request.run)
            .current_dir(&work)
            .env("DSPANS_PROJECT", &change.project)
            .env("DSPANS_CHANGE", change.number.to_string())
            .env("DSPANS_PATCHSET", change.patchset.to_string())
            .env("DSPANS_BRANCH", &change.branch)
            .env("DSPANS_PIPELINE", &request.pipeline)
            .env("DSPANS_JOB", &request.job)
            .env("DSPANS_BUILD", &request.build_uuid)
            .env("DSPANS_BUILDSET", &request.buildset_uuid)
            .env("DSPANS_ITEM", &request.item_uuid)
            .env("DSPANS_EVENT_ID", &request.zuul_event_id)
            .env("DSPANS_RETRY", request.retry.to_string())
            .env("TRACEPARENT", traceparent);
        let timeout = Duration::from_secs(request.timeout_s);
        let (outcome, _) = process::run(command, OutputMode::File(&log), timeout, abort).await;
        if tracing::enabled!(tracing::Level::DEBUG) {
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: String = output
                .chars()
                .rev()
                .take(2000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            tracing::debug!(build = %request.build_uuid, output = %tail, "build output (tail)");
        }
        let detail = match &outcome {
            Outcome::Exited(_) => None,
            Outcome::TimedOut => Some(format!("timed out after {} s", request.timeout_s)),
            Outcome::Aborted => Some("interrupted by executor shutdown".to_string()),
            Outcome::SpawnFailed(reason) => Some(reason.clone()),
        };
        (outcome, detail)
    }

    /// Completes a request that cannot be decoded, with an `ERROR` result.
    async fn reject(&self, queue: &JobQueue, claim: Claim, error: ModelError) {
        tracing::error!(
            executor = %self.worker.name, request = %claim.job.id, %error,
            "undecodable build request; completing it with ERROR"
        );
        let partial: PartialRequest =
            serde_json::from_str(claim.job.record.request.get()).unwrap_or_default();
        let outcome = serde_json::json!({ "result": "ERROR", "error": error.to_string() });
        match (partial.pipeline, partial.build_uuid) {
            (Some(pipeline), Some(build_uuid)) => {
                let now = Timestamp::now();
                let event = ResultEvent::BuildCompleted(BuildCompleted {
                    build_uuid,
                    buildset_uuid: partial.buildset_uuid.unwrap_or_default(),
                    item_uuid: partial.item_uuid.unwrap_or_default(),
                    job: partial.job.unwrap_or_default(),
                    result: BuildResult::Error,
                    exit_code: None,
                    start_time: now,
                    end_time: now,
                    executor: self.worker.name.clone(),
                });
                self.worker
                    .complete(queue, claim, &pipeline, &event, outcome)
                    .await;
            }
            _ => {
                if let Err(error) = queue.complete_with(claim, outcome, Vec::new()).await {
                    tracing::error!(%error, "cannot complete an undecodable request");
                }
            }
        }
    }
}
