//! The merger: claims merge requests from the merger queue, merges the
//! changes in a scratch clone when their project names a git repository,
//! and reports the result to the pipeline's result queue.
//!
//! Contract with the scheduler:
//!
//! - **Request**: a [`MergeRequest`] submitted as is (its JSON text) to the
//!   [`dspans_store::recipes::JobQueue`] at [`Layout::merger_queue`](crate::Layout::merger_queue).
//! - **Claim**: exclusive; only the winner starts `MergerJob`, a remote
//!   child of the request's `span_context` (attribute `merger`: the host
//!   name). It is ended before the result is written.
//! - **Branches**: change `N` patchset `P` is the branch named by
//!   [`change_branch`], `changes/N/P`, in the project's repository; it is
//!   merged onto the change's target branch (`ChangeRef::branch`).
//! - **Merge**: `request.changes` (the items ahead, then the item's own)
//!   are grouped by project, in order. For each project with a `repo` in
//!   the config: `git clone` into a scratch directory, check out the target
//!   branch, then `git merge --no-ff` each change branch in order. Any
//!   merge that fails → `MERGE_CONFLICT` (with the changes and git's
//!   message). A missing repository, target branch or change branch →
//!   `ERROR`. Changes of projects without a repo merge trivially. All
//!   merged → `MERGED`, with `commit` the resulting `HEAD` of the item's own
//!   project when it has a repo.
//! - **git**: run as a subprocess, non-interactive (`GIT_TERMINAL_PROMPT=0`,
//!   no system or global config, `HOME` in the scratch directory), fixed
//!   identity `dspans merger <merger@dspans.invalid>`, each command killed
//!   after [`GIT_TIMEOUT`].
//! - **Result**: [`ResultEvent::MergeCompleted`] and the request's
//!   `completed` state (`{"result": "<RESULT>"}`) in one multi-operation.
//!   Undecodable requests, shutdown: as for the executor
//!   ([`crate::executor`]).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dspans_store::recipes::{Claim, JobQueue};
use durable_spans::ChildOptions;
use opentelemetry::trace::{Span as _, Status};
use opentelemetry::KeyValue;

use crate::model::{
    ChangeRef, MergeCompleted, MergeRequest, MergeResult, ModelError, ResultEvent, WorkResult as _,
};
use crate::process::{self, Abort, Outcome, OutputMode};
use crate::scratch;
use crate::worker::{decode_request, PartialRequest, Queue, Role, Worker};

/// Longest time one git command may take.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(300);

/// The branch holding change `number`, patchset `patchset` in a project's
/// repository: `changes/<number>/<patchset>`. The one place that names it.
///
/// ```
/// use dspans_pipeline::merger::change_branch;
/// assert_eq!(change_branch(42, 3), "changes/42/3");
/// ```
pub fn change_branch(number: u64, patchset: u64) -> String {
    format!("changes/{number}/{patchset}")
}

/// The merger's [`Role`]: merging changes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Merges;

impl Role for Merges {
    const QUEUE: Queue = Queue::Merger;

    fn handle<'a>(
        worker: &'a Merger,
        queue: &'a JobQueue,
        claim: Claim,
        abort: Abort,
    ) -> impl Future<Output = ()> + Send + 'a {
        worker.handle(queue, claim, abort)
    }
}

/// A worker of the merger queue ([`Merger::new`], [`Worker::run`]). Cheap:
/// one claimed request at a time; run as many instances as wanted.
pub type Merger = Worker<Merges>;

/// What merging produced.
struct Merged {
    result: MergeResult,
    commit: Option<String>,
    message: Option<String>,
}

/// A git step failed.
enum GitFailure {
    /// Not a merge failure: missing repository or branch, git unusable.
    Error(String),
    /// A merge failed.
    Conflict(String),
    /// Shutdown interrupted it.
    Aborted,
}

impl Merger {
    async fn handle(&self, queue: &JobQueue, claim: Claim, abort: Abort) {
        let request: MergeRequest = match decode_request(&claim.job.record) {
            Ok(request) => request,
            Err(error) => return self.reject(queue, claim, error).await,
        };
        tracing::info!(merger = %self.name, request = %claim.job.id, merge = %request.uuid, "merge started");
        let mut span = self.tracer.start_span_in_context(
            request.span_context.as_ref(),
            "MergerJob",
            ChildOptions {
                attributes: vec![KeyValue::new("merger", self.hostname.clone())],
                ..ChildOptions::default()
            },
        );
        let merged = match self.merge(&request.changes, &abort).await {
            Ok(merged) => merged,
            Err(GitFailure::Aborted) => {
                span.set_attribute(KeyValue::new("error.type", "interrupted"));
                span.set_status(Status::error("interrupted by merger shutdown; handed back"));
                span.end();
                tracing::warn!(merger = %self.name, request = %claim.job.id,
                    "merge interrupted by shutdown; handing the request back");
                if let Err(error) = queue.release(claim).await {
                    tracing::error!(%error, "cannot hand the merge request back");
                }
                return;
            }
            Err(GitFailure::Conflict(message)) => Merged {
                result: MergeResult::MergeConflict,
                commit: None,
                message: Some(message),
            },
            Err(GitFailure::Error(message)) => Merged {
                result: MergeResult::Error,
                commit: None,
                message: Some(message),
            },
        };
        if merged.result.is_failure() {
            let message = merged.message.as_deref().unwrap_or_default();
            span.set_attribute(KeyValue::new("error.type", merged.result.as_str()));
            span.set_status(Status::error(format!(
                "{}: {message}",
                merged.result.as_str()
            )));
        }
        span.end();
        tracing::info!(merger = %self.name, merge = %request.uuid, result = %merged.result,
            message = merged.message.as_deref().unwrap_or(""), "merge completed");
        let outcome = serde_json::json!({ "result": merged.result.as_str() });
        let event = ResultEvent::MergeCompleted(MergeCompleted {
            merge_request: request.uuid.clone(),
            buildset_uuid: request.buildset_uuid.clone(),
            item_uuid: request.item_uuid.clone(),
            result: merged.result,
            commit: merged.commit,
            message: merged.message,
            merger: self.name.clone(),
        });
        self.complete(queue, claim, &request.pipeline, &event, outcome)
            .await;
    }

    /// Merges `changes` per project, in order (see the module docs).
    async fn merge(&self, changes: &[ChangeRef], abort: &Abort) -> Result<Merged, GitFailure> {
        let mut projects: Vec<(&str, Vec<&ChangeRef>)> = Vec::new();
        for change in changes {
            match projects.iter_mut().find(|(p, _)| *p == change.project) {
                Some((_, list)) => list.push(change),
                None => projects.push((&change.project, vec![change])),
            }
        }
        let own_project = changes.last().map(|c| c.project.as_str());
        let mut commit = None;
        for (project, changes) in projects {
            let Some(repo) = self.config.project(project).and_then(|p| p.repo.clone()) else {
                continue;
            };
            let head = self.merge_project(&repo, &changes, abort).await?;
            if Some(project) == own_project {
                commit = Some(head);
            }
        }
        Ok(Merged {
            result: MergeResult::Merged,
            commit,
            message: None,
        })
    }

    /// Clones `repo`, checks out the target branch and merges each change
    /// branch; returns the resulting `HEAD`.
    async fn merge_project(
        &self,
        repo: &Path,
        changes: &[&ChangeRef],
        abort: &Abort,
    ) -> Result<String, GitFailure> {
        let scratch = scratch::create("merge")
            .map_err(|e| GitFailure::Error(format!("cannot create a scratch directory: {e}")))?;
        let repo = std::path::absolute(repo).unwrap_or_else(|_| repo.to_path_buf());
        if !repo.exists() {
            return Err(GitFailure::Error(format!(
                "repository {} does not exist",
                repo.display()
            )));
        }
        let home = scratch.path().to_path_buf();
        let clone = scratch.path().join("repo");
        let git = Git {
            home: &home,
            dir: &clone,
            abort,
        };
        let clone_arg = clone.to_string_lossy().into_owned();
        let repo_arg = repo.to_string_lossy().into_owned();
        git.run(
            &["clone", "--quiet", "--no-checkout", &repo_arg, &clone_arg],
            false,
        )
        .await
        .map_err(|f| f.into_error("cannot clone"))?;
        let target = &changes[0].branch;
        git.run(
            &[
                "checkout",
                "--quiet",
                "-B",
                target,
                &format!("origin/{target}"),
            ],
            true,
        )
        .await
        .map_err(|f| f.into_error(&format!("cannot check out target branch {target:?}")))?;
        for change in changes {
            git.merge_change(change, target).await?;
        }
        let head = git
            .run(&["rev-parse", "HEAD"], true)
            .await
            .map_err(|f| f.into_error("no HEAD"))?;
        Ok(head.trim().to_string())
    }

    async fn reject(&self, queue: &JobQueue, claim: Claim, error: ModelError) {
        tracing::error!(merger = %self.name, request = %claim.job.id, %error,
            "undecodable merge request; completing it with ERROR");
        let partial = PartialRequest::of(&claim);
        let event = match (partial.pipeline, partial.uuid) {
            (Some(pipeline), Some(uuid)) => {
                let event = ResultEvent::MergeCompleted(MergeCompleted {
                    merge_request: uuid,
                    buildset_uuid: partial.buildset_uuid.unwrap_or_default(),
                    item_uuid: partial.item_uuid.unwrap_or_default(),
                    result: MergeResult::Error,
                    commit: None,
                    message: Some(error.to_string()),
                    merger: self.name.clone(),
                });
                Some((pipeline, event))
            }
            _ => None,
        };
        self.complete_undecodable(queue, claim, &error, event).await;
    }
}

impl GitFailure {
    fn into_error(self, context: &str) -> GitFailure {
        match self {
            GitFailure::Error(reason) | GitFailure::Conflict(reason) => {
                GitFailure::Error(format!("{context}: {reason}"))
            }
            GitFailure::Aborted => GitFailure::Aborted,
        }
    }
}

/// Runs git non-interactively with a fixed identity.
struct Git<'a> {
    home: &'a PathBuf,
    dir: &'a PathBuf,
    abort: &'a Abort,
}

impl Git<'_> {
    /// Merges a change's branch onto the checked-out `target`; a failed
    /// merge is a [`GitFailure::Conflict`].
    async fn merge_change(&self, change: &ChangeRef, target: &str) -> Result<(), GitFailure> {
        let branch = change_branch(change.number, change.patchset);
        let remote = format!("origin/{branch}");
        let commit = format!("{remote}^{{commit}}");
        self.run(&["rev-parse", "--verify", "--quiet", &commit], true)
            .await
            .map_err(|f| {
                f.into_error(&format!(
                    "change {} has no branch {branch:?}",
                    change.short()
                ))
            })?;
        let message = format!("Merge change {} ({branch})", change.short());
        let merge = ["merge", "--no-ff", "--no-edit", "-m", &message, &remote];
        self.run(&merge, true)
            .await
            .map(|_| ())
            .map_err(|failure| match failure {
                GitFailure::Error(reason) => GitFailure::Conflict(format!(
                    "change {} of {} does not merge onto {target}: {reason}",
                    change.short(),
                    change.project
                )),
                other => other,
            })
    }

    /// Runs `git args` (in the clone when `in_clone`); its stdout on
    /// success, [`GitFailure::Error`] with its output otherwise.
    async fn run(&self, args: &[&str], in_clone: bool) -> Result<String, GitFailure> {
        let mut command = tokio::process::Command::new("git");
        if in_clone {
            command.arg("-C").arg(self.dir);
        }
        command
            .args(args)
            .current_dir(self.home)
            .env("HOME", self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", "dspans merger")
            .env("GIT_AUTHOR_EMAIL", "merger@dspans.invalid")
            .env("GIT_COMMITTER_NAME", "dspans merger")
            .env("GIT_COMMITTER_EMAIL", "merger@dspans.invalid")
            .env("LC_ALL", "C");
        let (outcome, output) =
            process::run(command, OutputMode::Capture, GIT_TIMEOUT, self.abort).await;
        match outcome {
            Outcome::Exited(0) => Ok(output.stdout),
            Outcome::Exited(code) => {
                let text = format!("{}{}", output.stdout, output.stderr);
                let text = text.trim();
                let text: String = text.chars().take(1000).collect();
                Err(GitFailure::Error(format!(
                    "git {} exited {code}: {text}",
                    args[0]
                )))
            }
            Outcome::TimedOut => Err(GitFailure::Error(format!(
                "git {} timed out after {} s",
                args[0],
                GIT_TIMEOUT.as_secs()
            ))),
            Outcome::Aborted => Err(GitFailure::Aborted),
            Outcome::SpawnFailed(reason) => {
                Err(GitFailure::Error(format!("cannot run git: {reason}")))
            }
        }
    }
}
