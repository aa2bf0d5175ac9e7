//! What executors and mergers share: the [`Worker`] base (configuration,
//! store, tracer, name, layout, host name) and the worker loop, which
//! claims one request at a time and handles shutdown.

use std::future::Future;
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

/// How long work in hand may take to finish after shutdown is requested;
/// then its commands are killed and the request is handed back.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often the queue is polled when no notification arrives.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The state every queue worker (executor, merger) carries. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Worker {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) tracer: DurableTracer,
    pub(crate) name: String,
    pub(crate) layout: Layout,
    pub(crate) hostname: String,
}

impl Worker {
    /// A worker named `name` on the default [`Layout`].
    pub(crate) fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        tracer: DurableTracer,
        name: String,
    ) -> Worker {
        Worker {
            config,
            store,
            tracer,
            name,
            layout: Layout::default(),
            hostname: process::hostname(),
        }
    }

    /// Writes `event` to `pipeline`'s result queue and completes `claim`
    /// with `outcome` (see [`complete`]).
    pub(crate) async fn complete(
        &self,
        queue: &JobQueue,
        claim: Claim,
        pipeline: &str,
        event: &ResultEvent,
        outcome: serde_json::Value,
    ) {
        complete(
            &self.store,
            &self.layout,
            queue,
            claim,
            pipeline,
            event,
            outcome,
        )
        .await;
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

/// Writes `event` to the pipeline's result queue and completes the claimed
/// request with `outcome`, in one atomic multi-operation.
async fn complete(
    store: &Arc<dyn Store>,
    layout: &Layout,
    queue: &JobQueue,
    claim: Claim,
    pipeline: &str,
    event: &ResultEvent,
    outcome: serde_json::Value,
) {
    let id = claim.job.id.clone();
    let events = EventQueue::new(store.clone(), layout.result_events(pipeline));
    let op = match event.to_json() {
        Ok(data) => events.put_op(data).await,
        Err(error) => {
            tracing::error!(request = %id, %error, "cannot encode the result event");
            if let Err(error) = queue.release(claim).await {
                tracing::error!(request = %id, %error, "cannot hand the request back");
            }
            return;
        }
    };
    let op = match op {
        Ok(op) => op,
        Err(error) => {
            tracing::error!(request = %id, %error, "cannot prepare the result queue; handing back");
            if let Err(error) = queue.release(claim).await {
                tracing::error!(request = %id, %error, "cannot hand the request back");
            }
            return;
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

/// The worker loop shared by executors and mergers: claim the oldest
/// request, hand it to `work` (with the shutdown abort signal), repeat;
/// wait for queue notifications (or [`POLL_INTERVAL`]) when idle.
pub(crate) async fn serve<F, W>(
    queue: &JobQueue,
    name: &str,
    shutdown: impl Future<Output = ()>,
    mut work: W,
) where
    W: FnMut(Claim, Abort) -> F,
    F: Future<Output = ()>,
{
    let mut shutdown = std::pin::pin!(shutdown);
    match queue.reclaim(name).await {
        Ok(ids) if !ids.is_empty() => {
            tracing::warn!(worker = %name, requests = ?ids, "handed back the requests an earlier run of this worker had claimed")
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(worker = %name, %error, "cannot look for requests of an earlier run")
        }
    }
    let abort = Abort::new();
    let mut watch = None;
    let mut stale_locks_possible = false;
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
            match queue.release_stale_locks(name).await {
                Ok(ids) => {
                    stale_locks_possible = false;
                    if !ids.is_empty() {
                        tracing::warn!(worker = %name, requests = ?ids,
                            "freed request locks taken while the store connection was lost");
                    }
                }
                Err(error) => {
                    tracing::debug!(worker = %name, %error, "cannot look for stale locks yet")
                }
            }
        }
        let claimed = queue.claim_next(name).await;
        match claimed {
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
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(worker = %name, %error, "cannot read the queue");
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
