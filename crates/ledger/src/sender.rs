//! [`OutboxSender`]: sends ended spans to a collector and deletes their
//! entries once it accepted them. Its run loop is here; sending and
//! deleting are the `delivery` module's, claiming unassigned spans the
//! `claims` module's, and noticing senders that are gone the `takeover`
//! module's.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dspans_store::Store;
use durable_spans::DurableTracer;
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tokio::time::Instant;

use crate::batch::{Batch, Pace};
use crate::entries::Entries;
use crate::entry::SenderId;
use crate::handoff::{self, Handoff, Inbox};
use crate::paths::LedgerPaths;
use crate::takeover::Takeover;

/// How an [`OutboxSender`] paces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderOptions {
    /// Spans per export request. Default 512.
    pub max_batch: usize,
    /// How long the first span of a batch waits for company. Default 50 ms.
    pub batch_delay: Duration,
    /// How often the unassigned spans are listed (ended without a sender,
    /// beyond this process's queue, or left by a process found gone), and
    /// the running senders looked at. Default 1 s.
    pub sweep_interval: Duration,
    /// First wait after a failed export; doubled per failure. Default 250 ms.
    pub min_backoff: Duration,
    /// Longest wait between export attempts. Default 10 s.
    pub max_backoff: Duration,
    /// How long shutting down keeps trying to send what is in hand; what is
    /// left stays in the outbox for others. Default 3 s.
    pub drain_timeout: Duration,
    /// Spans this process's commits may hand over before the sender takes
    /// them; beyond, ended spans get unassigned markers and wait for the
    /// next sweep. Default 4,096.
    pub queue: usize,
}

impl Default for SenderOptions {
    fn default() -> Self {
        SenderOptions {
            max_batch: 512,
            batch_delay: Duration::from_millis(50),
            sweep_interval: Duration::from_secs(1),
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(3),
            queue: 4_096,
        }
    }
}

/// Counters of one sender, readable while it runs.
#[derive(Debug, Default)]
pub struct SenderStats {
    pub(crate) exported: AtomicU64,
    pub(crate) failed_exports: AtomicU64,
    pub(crate) swept: AtomicU64,
    pub(crate) unreadable: AtomicU64,
    pub(crate) receiving: AtomicBool,
}

impl SenderStats {
    /// Spans the collector accepted; their entries are deleted by the time
    /// they are counted (or wait for another try, logged).
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }

    /// Export requests that failed (each retried later).
    pub fn failed_exports(&self) -> u64 {
        self.failed_exports.load(Ordering::Relaxed)
    }

    /// Unassigned spans this sender claimed.
    pub fn swept(&self) -> u64 {
        self.swept.load(Ordering::Relaxed)
    }

    /// Entries found unreadable, dropped and deleted.
    pub fn unreadable(&self) -> u64 {
        self.unreadable.load(Ordering::Relaxed)
    }

    /// Whether the sender announced itself and receives the spans its
    /// process ends (until then they wait as unassigned).
    pub fn is_receiving(&self) -> bool {
        self.receiving.load(Ordering::Relaxed)
    }
}

/// `SpanExporter` is not dyn-compatible; this is the part of it used here.
pub(crate) trait Export: Send + Sync {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> Pin<Box<dyn Future<Output = OTelSdkResult> + Send + '_>>;
    fn shutdown(&self) -> OTelSdkResult;
}

impl<E: SpanExporter> Export for E {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> Pin<Box<dyn Future<Output = OTelSdkResult> + Send + '_>> {
        Box::pin(SpanExporter::export(self, batch))
    }

    fn shutdown(&self) -> OTelSdkResult {
        SpanExporter::shutdown(self)
    }
}

/// Sends the ended spans of a ledger root to a collector through a span
/// exporter: the spans this process's commits end come through its
/// [`Handoff`]; unassigned ones (their process had no sender, or died) are
/// found by periodic sweeps. A span's entry is deleted right after the
/// collector accepted it, in one multi-operation per export; failures are
/// retried with exponential backoff, so a collector that is away for a
/// while loses nothing (beyond [`LedgerLimits::max_outbox`](crate::LedgerLimits)).
///
/// A crash between the collector's acceptance and the deletion sends that
/// span again with the same ids: delivery is at least once, and `dspans
/// collector` drops such repeats.
pub struct OutboxSender {
    pub(crate) entries: Entries,
    pub(crate) exporter: Box<dyn Export>,
    pub(crate) scope: InstrumentationScope,
    pub(crate) me: SenderId,
    handoff: Handoff,
    pub(crate) inbox: Inbox,
    pub(crate) options: SenderOptions,
    pub(crate) stats: Arc<SenderStats>,
}

impl std::fmt::Debug for OutboxSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxSender")
            .field("name", &self.me.name)
            .field("root", &self.entries.paths().root())
            .finish()
    }
}

impl OutboxSender {
    /// A sender of the ledger under `root` in `store`, sending through
    /// `exporter` with `tracer`'s resource (spans that name no scope of
    /// their own go under its scope). `name` marks the spans it sends; a
    /// process restarted under the same name takes over its predecessor's.
    pub fn new<E: SpanExporter + 'static>(
        store: Arc<dyn Store>,
        root: impl Into<String>,
        mut exporter: E,
        tracer: &DurableTracer,
        name: impl Into<String>,
        options: SenderOptions,
    ) -> OutboxSender {
        exporter.set_resource(tracer.resource());
        let me = SenderId::new(&name.into(), store.session_id());
        let (handoff, inbox) = handoff::channel(options.queue);
        OutboxSender {
            entries: Entries::new(store, LedgerPaths::new(root)),
            exporter: Box::new(exporter),
            scope: tracer.scope().clone(),
            me,
            handoff,
            inbox,
            options,
            stats: Arc::default(),
        }
    }

    /// The handle through which this process's [`Ledger`](crate::Ledger)
    /// hands it the spans it ends ([`Ledger::with_handoff`](crate::Ledger::with_handoff)).
    pub fn handoff(&self) -> Handoff {
        self.handoff.clone()
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<SenderStats> {
        self.stats.clone()
    }

    fn pace(&self) -> Pace {
        Pace {
            max_batch: self.options.max_batch,
            batch_delay: self.options.batch_delay,
            min_backoff: self.options.min_backoff,
            max_backoff: self.options.max_backoff,
        }
    }

    /// Sends until `shutdown` resolves, then tries for
    /// [`SenderOptions::drain_timeout`] to send what it holds; anything
    /// left stays in the outbox (unassigned, claims released) for other
    /// senders.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut batch = Batch::new(self.pace());
        let mut undeleted: Vec<String> = Vec::new();
        let mut takeover = self.start().await;
        let mut next_sweep = Instant::now();
        loop {
            if batch.is_healthy() {
                self.take_queued(&mut batch);
            }
            if Instant::now() >= next_sweep {
                self.sweep(&mut batch, &mut takeover, &mut undeleted).await;
                next_sweep = Instant::now() + self.options.sweep_interval;
            }
            if batch.is_due(Instant::now()) {
                self.send(&mut batch, &mut undeleted).await;
                continue;
            }
            let wake = batch.due_at().map_or(next_sweep, |at| at.min(next_sweep));
            let takes_more = batch.takes_more();
            tokio::select! {
                _ = &mut shutdown => break,
                handed = self.inbox.recv(), if takes_more => {
                    if let Some(span) = handed {
                        batch.push(span.into());
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        self.drain(batch, undeleted).await;
    }

    /// Announces this sender and from then on receives the spans its
    /// process ends; then marks as unassigned the spans that senders now
    /// gone (this process's predecessor under the same name among them) had
    /// and did not send. Problems are logged: the sweeps try again.
    async fn start(&mut self) -> Takeover {
        let mut takeover = Takeover::new(self.entries.clone(), self.me.clone());
        match takeover.announce().await {
            Ok(()) => {
                // Entries name this sender only once others can see it
                // running.
                self.inbox.open(self.me.text());
                self.stats.receiving.store(true, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot announce the span exporter; spans ended here wait in the outbox");
            }
        }
        takeover.start().await;
        takeover
    }

    /// The periodic look at the store: while exports succeed, retries
    /// failed deletions, notices senders that are gone and claims
    /// unassigned spans; while they fail, only counts the unassigned spans,
    /// so the outbox limit holds through an outage.
    async fn sweep(&self, batch: &mut Batch, takeover: &mut Takeover, undeleted: &mut Vec<String>) {
        if !batch.is_healthy() {
            if let Err(error) = self.count_unassigned().await {
                tracing::warn!(%error, "cannot count the outbox");
            }
            return;
        }
        self.retry_deletions(undeleted).await;
        if let Err(error) = takeover.watch().await {
            tracing::warn!(%error, "cannot look for exporters that are gone");
        }
        if !batch.is_full() {
            if let Err(error) = self.claim_unassigned(batch).await {
                tracing::warn!(%error, "outbox sweep failed");
            }
        }
    }

    /// Moves the spans handed over into the batch, while it has room.
    pub(crate) fn take_queued(&mut self, batch: &mut Batch) {
        while !batch.is_full() {
            match self.inbox.try_recv() {
                Some(span) => batch.push(span.into()),
                None => break,
            }
        }
    }
}
