//! The executor: claims build requests from the executor queue, runs each
//! job's command and reports the result to the pipeline's result queue.
//!
//! Contract with the scheduler:
//!
//! - **Request**: a [`BuildRequest`] submitted as is (its JSON text) to the
//!   [`JobQueue`] at [`Layout::executor_queue`](crate::Layout::executor_queue). A request holding the JSON
//!   text as a string (`StoredObject::to_embedded`) is read too.
//! - **Claim**: exclusive ([`JobQueue::claim_next`]); only the winner starts
//!   spans: `JobExecution`, a remote child of the request's `span_context`
//!   (attribute `hostname`), and under it `JobRun` (attribute `exit_code`:
//!   the command's exit code, `-1` when it was killed or never started).
//! - **Job**: the request names a job; its command (`run`) and `timeout_s`
//!   come from the `[[job]]` of that name in the executor's own config,
//!   never from the store. A job the config does not name is not run: the
//!   build completes `CONFIG_ERROR` and `JobExecution` ends with an error
//!   status saying why.
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
//!   [`Layout::result_events`](crate::Layout::result_events) of the request's pipeline and marks the
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
use std::time::Duration;

use dspans_store::recipes::{Claim, JobQueue};
use durable_spans::{span_context_of, ChildOptions, Timestamp};
use opentelemetry::trace::{Span as _, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};

use crate::build_logs;
use crate::config::JobConfig;
use crate::model::{BuildCompleted, BuildRequest, BuildResult, ModelError, ResultEvent};
use crate::process::{self, Abort, Outcome, OutputMode};
use crate::scratch;
use crate::worker::{decode_request, PartialRequest, Queue, Role, Worker};

pub use crate::worker::SHUTDOWN_GRACE;

/// The executor's [`Role`]: running builds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Builds;

impl Role for Builds {
    const QUEUE: Queue = Queue::Executor;

    fn handle<'a>(
        worker: &'a Executor,
        queue: &'a JobQueue,
        claim: Claim,
        abort: Abort,
    ) -> impl Future<Output = ()> + Send + 'a {
        worker.execute(queue, claim, abort)
    }
}

/// How a build's command ran.
struct Ran {
    outcome: Outcome,
    /// Why, for anything but a plain exit.
    detail: Option<String>,
    /// The log kept of its output.
    log_url: Option<String>,
}

/// A worker of the executor queue ([`Executor::new`], [`Worker::run`]).
/// Cheap: one claimed build at a time, run as many instances (tasks or
/// processes) as wanted.
pub type Executor = Worker<Builds>;

impl Executor {
    async fn execute(&self, queue: &JobQueue, claim: Claim, abort: Abort) {
        let request: BuildRequest = match decode_request(&claim.job.record) {
            Ok(request) => request,
            Err(error) => return self.reject(queue, claim, error).await,
        };
        let Some(job) = self.config.job(&request.job).cloned() else {
            return self.refuse_unknown_job(queue, claim, request).await;
        };
        tracing::info!(
            executor = %self.name, request = %claim.job.id, build = %request.build_uuid,
            job = %request.job, "build started"
        );
        let exec = self.start_job_execution(&request);
        let exec_cx = Context::new().with_span(exec);
        let mut run_span = self.tracer.tracer().start_with_context("JobRun", &exec_cx);
        let traceparent = span_context_of(&run_span).to_traceparent();

        let start_time = Timestamp::now();
        let Ran {
            outcome,
            detail,
            log_url,
        } = self.run_command(&request, &job, &traceparent, &abort).await;
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
        if let Some(code) = exit_code {
            run_span.set_attribute(KeyValue::new("process.exit.code", i64::from(code)));
        }
        let failure = match (&detail, exit_code) {
            (Some(detail), _) => Some(detail.clone()),
            (None, Some(code)) if code != 0 => Some(format!("exited with {code}")),
            _ => None,
        };
        if let Some(description) = failure {
            // A build handed back at shutdown is not the job's failure.
            let error_type = match outcome {
                Outcome::Aborted => "interrupted",
                _ => result.as_str(),
            };
            run_span.set_attribute(KeyValue::new("error.type", error_type));
            run_span.set_status(Status::error(description.clone()));
            let exec = exec_cx.span();
            exec.set_attribute(KeyValue::new("error.type", error_type));
            exec.set_status(Status::error(description));
        }
        run_span.end();
        exec_cx.span().end();

        if outcome == Outcome::Aborted {
            tracing::warn!(
                executor = %self.name, request = %claim.job.id, build = %request.build_uuid,
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
            executor: self.name.clone(),
            log_url: log_url.clone(),
        };
        tracing::info!(
            executor = %self.name, build = %request.build_uuid, job = %request.job,
            %result, ?exit_code, log = log_url.as_deref().unwrap_or("-"), "build completed"
        );
        let outcome = serde_json::json!({ "result": result.as_str() });
        let event = ResultEvent::BuildCompleted(event);
        self.complete(queue, claim, &request.pipeline, &event, outcome)
            .await;
    }

    /// Starts the `JobExecution` span, a remote child of the `Build` span,
    /// with the executor as the CI/CD worker.
    fn start_job_execution(&self, request: &BuildRequest) -> opentelemetry_sdk::trace::Span {
        self.tracer.start_span_in_context(
            request.span_context.as_ref(),
            "JobExecution",
            ChildOptions {
                attributes: vec![
                    KeyValue::new("hostname", self.hostname.clone()),
                    KeyValue::new("cicd.worker.id", self.name.clone()),
                    KeyValue::new("cicd.worker.name", self.name.clone()),
                ],
                ..ChildOptions::default()
            },
        )
    }

    /// Completes a request whose job this executor's config does not name:
    /// nothing runs, the build ends `CONFIG_ERROR`, and its `JobExecution`
    /// span ends with an error status saying why.
    async fn refuse_unknown_job(&self, queue: &JobQueue, claim: Claim, request: BuildRequest) {
        let why = format!(
            "job {:?} is not configured on executor {}; nothing was run",
            request.job, self.name
        );
        tracing::error!(request = %claim.job.id, build = %request.build_uuid, "{why}");
        let mut exec = self.start_job_execution(&request);
        exec.set_attribute(KeyValue::new(
            "error.type",
            BuildResult::ConfigError.as_str(),
        ));
        exec.set_status(Status::error(why.clone()));
        exec.end();
        let now = Timestamp::now();
        let result = BuildResult::ConfigError;
        let event = ResultEvent::BuildCompleted(BuildCompleted {
            build_uuid: request.build_uuid,
            buildset_uuid: request.buildset_uuid,
            item_uuid: request.item_uuid,
            job: request.job,
            result,
            exit_code: None,
            start_time: now,
            end_time: now,
            executor: self.name.clone(),
            log_url: None,
        });
        let outcome = serde_json::json!({ "result": result.as_str(), "error": why });
        self.complete(queue, claim, &request.pipeline, &event, outcome)
            .await;
    }

    /// Runs the request's command; returns how it ended and, for anything
    /// but a plain exit, why, and the URL of the log it kept.
    async fn run_command(
        &self,
        request: &BuildRequest,
        job: &JobConfig,
        traceparent: &str,
        abort: &Abort,
    ) -> Ran {
        let not_started = |reason: String| Ran {
            outcome: Outcome::SpawnFailed(reason.clone()),
            detail: Some(reason),
            log_url: None,
        };
        let scratch = match scratch::create("build") {
            Ok(dir) => dir,
            Err(e) => return not_started(format!("cannot create a scratch directory: {e}")),
        };
        let work = scratch.path().join("work");
        let log = scratch.path().join("output.log");
        if let Err(e) = std::fs::create_dir(&work) {
            return not_started(format!("cannot create {}: {e}", work.display()));
        }
        let change = &request.change;
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(&job.run)
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
        let timeout = Duration::from_secs(job.timeout_s);
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
            Outcome::TimedOut => Some(format!("timed out after {} s", job.timeout_s)),
            Outcome::Aborted => Some("interrupted by executor shutdown".to_string()),
            Outcome::SpawnFailed(reason) => Some(reason.clone()),
        };
        let log_url = build_logs::keep(&self.config.logs, &request.build_uuid, &log);
        let pruned = build_logs::prune(&self.config.logs);
        if pruned > 0 {
            tracing::debug!(logs = pruned, "old build logs deleted");
        }
        Ran {
            outcome,
            detail,
            log_url,
        }
    }

    /// Completes a request that cannot be decoded, with an `ERROR` result.
    async fn reject(&self, queue: &JobQueue, claim: Claim, error: ModelError) {
        tracing::error!(
            executor = %self.name, request = %claim.job.id, %error,
            "undecodable build request; completing it with ERROR"
        );
        let partial = PartialRequest::of(&claim);
        let event = match (partial.pipeline, partial.build_uuid) {
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
                    executor: self.name.clone(),
                    log_url: None,
                });
                Some((pipeline, event))
            }
            _ => None,
        };
        self.complete_undecodable(queue, claim, &error, event).await;
    }
}
