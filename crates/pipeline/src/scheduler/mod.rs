//! The scheduler: turns trigger events into queue items, asks mergers and
//! executors for work, and ends the spans of what finished.
//!
//! Any number of schedulers run at once. A pipeline is processed only by the
//! scheduler holding its lock (`Layout::pipeline_lock`); when that scheduler
//! dies its session ends, the lock is freed, and another one takes over from
//! whatever is in the store: every decision is written back before the next
//! one is made, so nothing lives only in a scheduler's memory.
//!
//! Span data rides in the objects the pipeline writes anyway: the
//! `QueueItem`, `BuildSet` and `Build` spans are saved in those objects, the
//! `Merge` span in the merge request. Each is also recorded as open in the
//! span ledger (`dspans_ledger`) by the transaction that writes its owner,
//! and ended by the transaction (a compare-and-set) that records its end:
//! that transaction moves it to the ledger's outbox, from which outbox
//! senders send it. Two schedulers never both end a span, and a scheduler killed
//! after the write loses nothing.
//!
//! Executors that die leave their request claimed but unlocked; the
//! scheduler hands such requests back to the queue and another executor
//! retries the build (see `JobQueue::requeue_orphans`).

mod db;
mod manage;
mod results;
mod set_aside;
mod spans;
mod trigger;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dspans_ledger::{Ledger, SpanEnds};
use dspans_store::recipes::{JobQueue, Lock, LockGuard, REQUEUE_HOLDER};
use dspans_store::{Op, OpResult, Store};
use durable_spans::DurableTracer;

pub use db::StepError;
use db::{ObjectCache, Versioned};
pub use trigger::enqueue;

use crate::quiet::{Episodes, Repeats, Say, REPEAT_LOG_INTERVAL};
use crate::{Config, Layout};

/// How often a scheduler looks for new events and work. Events are small
/// and queues are short, so polling keeps the protocol the same on both
/// store backends.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How often a scheduler looks for requests whose worker died. A dead
/// worker's session takes seconds to end anyway, and the look reads every
/// waiting request, so it is not worth doing on every pass.
pub const ORPHAN_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A scheduler process's state.
pub struct Scheduler {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    tracer: DurableTracer,
    layout: Layout,
    ledger: Ledger,
    name: String,
    cache: ObjectCache,
    /// A look for orphaned requests failed: it may have left a lock.
    requeue_failed: AtomicBool,
    /// The current run of failures of each pipeline's step, so a step that
    /// keeps failing is logged once per interval, not on every pass.
    failures: Mutex<HashMap<String, Repeats>>,
    /// The failure episodes of trigger events being retried, so a retried
    /// event ends one error span per episode, not one per pass.
    event_episodes: Mutex<Episodes>,
}

impl Scheduler {
    /// A scheduler named `name` (its lock holder id in the store).
    pub fn new(
        config: impl Into<Arc<Config>>,
        store: Arc<dyn Store>,
        tracer: DurableTracer,
        name: impl Into<String>,
    ) -> Scheduler {
        let layout = Layout::default();
        Scheduler {
            config: config.into(),
            ledger: Ledger::new(store.clone(), layout.spans()),
            store,
            tracer,
            layout,
            name: name.into(),
            cache: ObjectCache::default(),
            requeue_failed: AtomicBool::new(false),
            failures: Mutex::default(),
            event_episodes: Mutex::default(),
        }
    }

    /// Uses another store layout (tests); the span ledger moves with it.
    pub fn with_layout(mut self, layout: Layout) -> Scheduler {
        self.ledger = Ledger::new(self.store.clone(), layout.spans());
        self.layout = layout;
        self
    }

    /// Uses this span ledger (one with a `Handoff` to this process's
    /// `OutboxSender`, so the spans this scheduler ends go straight to it).
    /// Without one, ended spans wait unassigned for any process's sender to
    /// claim them. Give it after [`with_layout`](Self::with_layout).
    pub fn with_ledger(mut self, ledger: Ledger) -> Scheduler {
        self.ledger = ledger;
        self
    }

    /// Processes the pipelines it can lock until `shutdown` resolves, then
    /// releases its locks. Work is persisted step by step, so stopping at
    /// any point hands everything over intact.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut held: BTreeMap<String, LockGuard> = BTreeMap::new();
        let mut next_orphan_check = Instant::now();
        tracing::info!(scheduler = %self.name, "scheduler started");
        loop {
            self.pass(&mut held, &mut next_orphan_check).await;
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
        for (pipeline, guard) in held {
            if let Err(error) = guard.release().await {
                tracing::warn!(%pipeline, %error, "could not release the pipeline lock");
            }
        }
        tracing::info!(scheduler = %self.name, "scheduler stopped");
    }

    /// One round: take free pipeline locks, then process every pipeline held.
    async fn pass(&self, held: &mut BTreeMap<String, LockGuard>, next_orphan_check: &mut Instant) {
        held.retain(|pipeline, guard| {
            let keep = guard.is_held();
            if !keep {
                tracing::warn!(scheduler = %self.name, %pipeline, "lost the pipeline lock");
                self.cache.clear();
            }
            keep
        });
        for pipeline in &self.config.pipelines {
            if held.contains_key(&pipeline.name) {
                continue;
            }
            let lock = Lock::new(
                self.store.clone(),
                self.layout.pipeline_lock(&pipeline.name),
            );
            match lock.try_acquire_or_reclaim(self.name.as_bytes()).await {
                Ok(Some(guard)) => {
                    tracing::info!(scheduler = %self.name, pipeline = %pipeline.name, "processing pipeline");
                    // Whoever held it before may have changed anything.
                    self.cache.clear();
                    held.insert(pipeline.name.clone(), guard);
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "cannot take a pipeline lock"),
            }
        }
        if held.is_empty() {
            return;
        }
        if Instant::now() >= *next_orphan_check {
            *next_orphan_check = Instant::now() + ORPHAN_CHECK_INTERVAL;
            self.requeue_orphans().await;
        }
        for pipeline in held.keys() {
            let result = self.process(pipeline).await;
            if result.is_err() {
                self.cache.clear();
            }
            self.log_step(pipeline, result);
        }
    }

    /// Logs a failed step once per run of identical failures (then a
    /// summary every [`REPEAT_LOG_INTERVAL`]), and the recovery.
    fn log_step(&self, pipeline: &str, result: Result<(), StepError>) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let repeats = failures
            .entry(pipeline.to_string())
            .or_insert_with(|| Repeats::new(REPEAT_LOG_INTERVAL));
        let error = match result {
            Ok(()) => {
                if let Some(failures) = repeats.recovered().filter(|n| *n > 1) {
                    tracing::info!(scheduler = %self.name, %pipeline, failures, "pipeline step succeeded again");
                }
                return;
            }
            Err(error) => error,
        };
        match repeats.failed(&error.to_string()) {
            Say::First => {
                tracing::warn!(scheduler = %self.name, %pipeline, %error, "pipeline step failed; retrying")
            }
            Say::Again { suppressed } => tracing::warn!(
                scheduler = %self.name, %pipeline, %error, repeated = suppressed,
                "pipeline step still failing; retrying"
            ),
            Say::Quiet => {}
        }
    }

    /// Hands requests claimed by dead workers back to their queues.
    async fn requeue_orphans(&self) {
        let stale_locks_possible = self.requeue_failed.swap(false, Ordering::Relaxed);
        for queue in [self.layout.executor_queue(), self.layout.merger_queue()] {
            let queue = JobQueue::new(self.store.clone(), queue);
            // A failed look may have left one of its short-lived locks
            // behind (see `JobQueue::release_stale_locks`).
            if stale_locks_possible {
                if let Err(error) = queue.release_stale_locks(REQUEUE_HOLDER).await {
                    tracing::debug!(%error, "cannot look for stale locks yet");
                    self.requeue_failed.store(true, Ordering::Relaxed);
                }
            }
            match queue.requeue_orphans().await {
                Ok(ids) if !ids.is_empty() => {
                    tracing::warn!(requests = ?ids, "requests of dead workers handed back for a retry")
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "cannot look for orphaned requests");
                    self.requeue_failed.store(true, Ordering::Relaxed);
                }
            }
        }
    }

    /// Ends saved spans as this scheduler (`dspans.ended_by`).
    fn ender(&self) -> spans::Ender<'_> {
        spans::Ender {
            tracer: &self.tracer,
            name: &self.name,
        }
    }

    /// The failure episodes of trigger events (a poisoned lock still holds
    /// counts worth keeping).
    fn episodes(&self) -> std::sync::MutexGuard<'_, Episodes> {
        self.event_episodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Reads a pipeline object (see [`ObjectCache`]).
    async fn read<T: crate::model::StoredObject>(
        &self,
        path: &str,
    ) -> Result<Option<Versioned<T>>, StepError> {
        self.cache.read(&self.store, path).await
    }

    /// Writes `ops` as one multi-operation.
    async fn write(&self, ops: &[Op]) -> Result<Vec<OpResult>, StepError> {
        let effects = self.cache.effects(ops);
        let results = self.store.multi(ops).await?;
        self.cache.apply(effects, &results);
        Ok(results)
    }

    /// Writes `ops` and ends the spans of `ends` in one multi-operation
    /// (see [`Ledger::commit`]).
    async fn commit(&self, ops: Vec<Op>, ends: SpanEnds) -> Result<Vec<OpResult>, StepError> {
        let effects = self.cache.effects(&ops);
        let results = self.ledger.commit(ops, ends).await?;
        self.cache.apply(effects, &results);
        Ok(results)
    }

    async fn process(&self, pipeline: &str) -> Result<(), StepError> {
        trigger::process_trigger_events(self, pipeline).await?;
        results::process_result_events(self, pipeline).await?;
        manage::manage_pipeline(self, pipeline).await
    }
}
