//! The queue worker that executors and mergers are: [`Worker`] carries what
//! both need (configuration, store, tracer, name, layout, host name) and
//! runs the loop that claims one request at a time and handles shutdown; a
//! [`Role`] says what is done with a claimed request.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use dspans_store::recipes::{Claim, EventQueue, JobQueue, JobRecord};
use dspans_store::Store;
use durable_spans::DurableTracer;
use serde::Deserialize;

use crate::config::Config;
use crate::layout::Layout;
use crate::model::{ModelError, ResultEvent, StoredObject};
use crate::process::{self, Abort};
use crate::quiet::{Repeats, Say, REPEAT_LOG_INTERVAL};
use crate::scratch;

/// How long work in hand may take to finish after shutdown is requested;
/// then its commands are killed and the request is handed back.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often the queue is polled when no notification arrives.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The queue a worker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// Build requests ([`Layout::executor_queue`]).
    Executor,
    /// Merge requests ([`Layout::merger_queue`]).
    Merger,
}

impl Queue {
    /// What its workers are called: `executor` or `merger`.
    pub fn worker_kind(self) -> &'static str {
        match self {
            Queue::Executor => "executor",
            Queue::Merger => "merger",
        }
    }

    fn path(self, layout: &Layout) -> String {
        match self {
            Queue::Executor => layout.executor_queue(),
            Queue::Merger => layout.merger_queue(),
        }
    }

    /// The prefix of its workers' scratch directories.
    fn scratch(self) -> &'static str {
        match self {
            Queue::Executor => "build",
            Queue::Merger => "merge",
        }
    }

    /// Logs a worker's start or stop under the field its kind's other lines
    /// use.
    fn log(self, name: &str, event: &str) {
        match self {
            Queue::Executor => tracing::info!(executor = %name, "executor {event}"),
            Queue::Merger => tracing::info!(merger = %name, "merger {event}"),
        }
    }
}

/// What a [`Worker`] does with the requests it claims: the part that
/// differs between an executor ([`crate::executor::Builds`]) and a merger
/// ([`crate::merger::Merges`]).
pub trait Role: Sized + Send + Sync + 'static {
    /// The queue it serves.
    const QUEUE: Queue;

    /// Handles one claimed request: completes it with its result, or hands
    /// it back when `abort` is raised.
    fn handle<'a>(
        worker: &'a Worker<Self>,
        queue: &'a JobQueue,
        claim: Claim,
        abort: Abort,
    ) -> impl Future<Output = ()> + Send + 'a;
}

/// A worker of one queue. Cheap: one claimed request at a time; run as
/// many instances (tasks or processes) as wanted.
#[derive(Debug)]
pub struct Worker<R> {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) tracer: DurableTracer,
    pub(crate) name: String,
    pub(crate) layout: Layout,
    pub(crate) hostname: String,
    role: PhantomData<fn() -> R>,
}

impl<R> Clone for Worker<R> {
    fn clone(&self) -> Self {
        Worker {
            config: self.config.clone(),
            store: self.store.clone(),
            tracer: self.tracer.clone(),
            name: self.name.clone(),
            layout: self.layout.clone(),
            hostname: self.hostname.clone(),
            role: PhantomData,
        }
    }
}

impl<R: Role> Worker<R> {
    /// A worker named `name` (its claims and results carry the name) on
    /// the default [`Layout`].
    pub fn new(
        config: impl Into<Arc<Config>>,
        store: Arc<dyn Store>,
        tracer: DurableTracer,
        name: impl Into<String>,
    ) -> Worker<R> {
        Worker {
            config: config.into(),
            store,
            tracer,
            name: name.into(),
            layout: Layout::default(),
            hostname: process::hostname(),
            role: PhantomData,
        }
    }

    /// Uses another store layout (default [`Layout::default`]).
    pub fn with_layout(mut self, layout: Layout) -> Worker<R> {
        self.layout = layout;
        self
    }

    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration it was given.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Claims and handles requests until `shutdown` resolves (see the
    /// executor's module documentation for what happens to the request in
    /// hand).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let queue = JobQueue::new(self.store.clone(), R::QUEUE.path(&self.layout));
        R::QUEUE.log(&self.name, "started");
        scratch::remove_abandoned(R::QUEUE.scratch());
        serve(&queue, &self.name, shutdown, |claim, abort| {
            R::handle(&self, &queue, claim, abort)
        })
        .await;
        R::QUEUE.log(&self.name, "stopped");
    }

    /// Writes `event` to `pipeline`'s result queue and completes `claim`
    /// with `outcome`, in one atomic multi-operation.
    pub(crate) async fn complete(
        &self,
        queue: &JobQueue,
        claim: Claim,
        pipeline: &str,
        event: &ResultEvent,
        outcome: serde_json::Value,
    ) {
        let id = claim.job.id.clone();
        let events = EventQueue::new(self.store.clone(), self.layout.result_events(pipeline));
        let op = match event.to_json() {
            Ok(data) => events.put_op(data).await,
            Err(error) => {
                tracing::error!(request = %id, %error, "cannot encode the result event");
                return hand_back(queue, claim).await;
            }
        };
        let op = match op {
            Ok(op) => op,
            Err(error) => {
                tracing::error!(request = %id, %error, "cannot prepare the result queue; handing back");
                return hand_back(queue, claim).await;
            }
        };
        match queue.complete_with(claim, outcome, vec![op]).await {
            Ok(_) => tracing::debug!(request = %id, %pipeline, "result written"),
            Err(error) => tracing::error!(
                request = %id, %error,
                "cannot write the result (request changed or lock lost); the scheduler will notice"
            ),
        }
    }

    /// Completes a request that cannot be decoded with `{"result":
    /// "ERROR", "error": …}`, and writes `event` to the result queue of its
    /// pipeline when the request still named where its result goes.
    pub(crate) async fn complete_undecodable(
        &self,
        queue: &JobQueue,
        claim: Claim,
        error: &ModelError,
        event: Option<(String, ResultEvent)>,
    ) {
        let outcome = serde_json::json!({ "result": "ERROR", "error": error.to_string() });
        match event {
            Some((pipeline, event)) => {
                self.complete(queue, claim, &pipeline, &event, outcome)
                    .await
            }
            None => {
                if let Err(error) = queue.complete_with(claim, outcome, Vec::new()).await {
                    tracing::error!(%error, "cannot complete an undecodable request");
                }
            }
        }
    }
}

async fn hand_back(queue: &JobQueue, claim: Claim) {
    let id = claim.job.id.clone();
    if let Err(error) = queue.release(claim).await {
        tracing::error!(request = %id, %error, "cannot hand the request back");
    }
}

/// The fields of a request that identify where its result goes, read from
/// a request that does not decode as a whole.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PartialRequest {
    pub pipeline: Option<String>,
    pub build_uuid: Option<String>,
    pub uuid: Option<String>,
    pub buildset_uuid: Option<String>,
    pub item_uuid: Option<String>,
    pub job: Option<String>,
}

impl PartialRequest {
    /// What can be read of a claimed request (nothing, if it is not even a
    /// JSON object).
    pub fn of(claim: &Claim) -> PartialRequest {
        serde_json::from_str(claim.job.record.request.get()).unwrap_or_default()
    }
}

/// Decodes a queued request: its JSON text, or that text held as a JSON
/// string.
pub(crate) fn decode_request<T: StoredObject>(record: &JobRecord) -> Result<T, ModelError> {
    let text = record.request.get();
    if text.trim_start().starts_with('"') {
        if let Ok(inner) = serde_json::from_str::<String>(text) {
            return T::from_json(inner.as_bytes());
        }
    }
    T::from_json(text.as_bytes())
}

/// The worker loop: claim the oldest request, hand it to `work` (with the
/// shutdown abort signal), repeat; wait for queue notifications (or
/// [`POLL_INTERVAL`]) when idle.
async fn serve<F, W>(queue: &JobQueue, name: &str, shutdown: impl Future<Output = ()>, mut work: W)
where
    W: FnMut(Claim, Abort) -> F,
    F: Future<Output = ()>,
{
    let mut shutdown = std::pin::pin!(shutdown);
    reclaim(queue, name).await;
    let abort = Abort::new();
    let mut watch = None;
    let mut stale_locks_possible = false;
    let mut failures = Repeats::new(REPEAT_LOG_INTERVAL);
    loop {
        if watch.is_none() {
            match queue.watch().await {
                Ok(w) => watch = Some(w),
                Err(error) => tracing::warn!(worker = %name, %error, "cannot watch the queue"),
            }
        }
        // Poll shutdown once, but never cancel a claim half-way: a dropped
        // `claim_next` could leave a request locked and `running` by nobody.
        let stop_now = tokio::select! {
            biased;
            _ = &mut shutdown => true,
            _ = std::future::ready(()) => false,
        };
        if stop_now {
            return;
        }
        if stale_locks_possible {
            stale_locks_possible = !release_stale_locks(queue, name).await;
        }
        match queue.claim_next(name).await {
            Ok(Some(claim)) => {
                let mut job = std::pin::pin!(work(claim, abort.clone()));
                let stopping = tokio::select! {
                    _ = &mut job => false,
                    _ = &mut shutdown => true,
                };
                if stopping {
                    tracing::info!(worker = %name, grace_s = SHUTDOWN_GRACE.as_secs(),
                        "shutdown requested; finishing the work in hand");
                    tokio::select! {
                        _ = &mut job => {}
                        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
                            abort.raise();
                            job.await;
                        }
                    }
                    return;
                }
                continue;
            }
            Ok(None) => {
                failures.recovered();
            }
            Err(error) => {
                match failures.failed(&error.to_string()) {
                    Say::First => tracing::warn!(worker = %name, %error, "cannot read the queue"),
                    Say::Again { suppressed } => tracing::warn!(
                        worker = %name, %error, repeated = suppressed, "still cannot read the queue"
                    ),
                    Say::Quiet => {}
                }
                watch = None;
                stale_locks_possible = true;
            }
        }
        let ended = tokio::select! {
            _ = &mut shutdown => return,
            ended = wait_for_change(watch.as_mut()) => ended,
        };
        if ended {
            watch = None;
        }
    }
}

/// Hands back the requests an earlier run of this worker had claimed.
async fn reclaim(queue: &JobQueue, name: &str) {
    match queue.reclaim(name).await {
        Ok(ids) if !ids.is_empty() => {
            tracing::warn!(worker = %name, requests = ?ids, "handed back the requests an earlier run of this worker had claimed")
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(worker = %name, %error, "cannot look for requests of an earlier run")
        }
    }
}

/// Frees request locks taken while the store connection was lost; true
/// once the look succeeded.
async fn release_stale_locks(queue: &JobQueue, name: &str) -> bool {
    match queue.release_stale_locks(name).await {
        Ok(ids) => {
            if !ids.is_empty() {
                tracing::warn!(worker = %name, requests = ?ids,
                    "freed request locks taken while the store connection was lost");
            }
            true
        }
        Err(error) => {
            tracing::debug!(worker = %name, %error, "cannot look for stale locks yet");
            false
        }
    }
}

/// Waits for a queue notification or [`POLL_INTERVAL`]; true when the
/// watch has ended (it is then renewed).
async fn wait_for_change(watch: Option<&mut dspans_store::Watch>) -> bool {
    let Some(watch) = watch else {
        tokio::time::sleep(POLL_INTERVAL).await;
        return false;
    };
    match tokio::time::timeout(POLL_INTERVAL, watch.next()).await {
        Ok(Some(_)) => {
            watch.drain();
            false
        }
        Ok(None) => {
            tokio::time::sleep(POLL_INTERVAL).await;
            true
        }
        Err(_) => false,
    }
}
