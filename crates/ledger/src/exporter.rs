//! [`OutboxExporter`]: sends outbox entries to a collector and deletes them
//! only once it accepted them.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dspans_store::{CreateMode, Op, StoreError};
use durable_spans::DurableTracer;
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::entry::{Entry, Exporter};
use crate::ledger::{Ledger, Pending};

/// How an [`OutboxExporter`] paces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExporterOptions {
    /// Spans per export request. Default 512.
    pub max_batch: usize,
    /// How long the first span of a batch waits for company. Default 50 ms.
    pub batch_delay: Duration,
    /// How often the outbox is listed for ended spans nobody exports (ended
    /// without an exporter, beyond this process's memory, or left by a
    /// process found gone). Default 1 s.
    pub sweep_interval: Duration,
    /// How often open spans whose owner is gone are ended as orphans;
    /// `None` (the default) leaves that to other processes.
    pub orphan_interval: Option<Duration>,
    /// First wait after a failed export; doubled per failure. Default 250 ms.
    pub min_backoff: Duration,
    /// Longest wait between export attempts. Default 10 s.
    pub max_backoff: Duration,
    /// How long shutting down keeps trying to send what is in hand; what is
    /// left stays in the outbox for others. Default 3 s.
    pub drain_timeout: Duration,
    /// How long the entries of sent spans wait to be deleted inside a
    /// transaction that this process commits anyway; after that the
    /// exporter deletes them itself. Default 250 ms.
    pub deletion_delay: Duration,
}

impl Default for ExporterOptions {
    fn default() -> Self {
        ExporterOptions {
            max_batch: 512,
            batch_delay: Duration::from_millis(50),
            sweep_interval: Duration::from_secs(1),
            orphan_interval: None,
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(3),
            deletion_delay: Duration::from_millis(250),
        }
    }
}

/// Counters of one exporter, readable while it runs.
#[derive(Debug, Default)]
pub struct ExporterStats {
    exported: AtomicU64,
    failed_exports: AtomicU64,
    swept: AtomicU64,
    orphans: AtomicU64,
    receiving: std::sync::atomic::AtomicBool,
}

impl ExporterStats {
    /// Spans the collector accepted (their entries deleted, or handed to
    /// this process's next transaction for deletion).
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }

    /// Export requests that failed (each retried later).
    pub fn failed_exports(&self) -> u64 {
        self.failed_exports.load(Ordering::Relaxed)
    }

    /// Spans taken over from the outbox by a sweep.
    pub fn swept(&self) -> u64 {
        self.swept.load(Ordering::Relaxed)
    }

    /// Orphaned spans this exporter ended.
    pub fn orphans(&self) -> u64 {
        self.orphans.load(Ordering::Relaxed)
    }

    /// Whether the exporter announced itself and receives the spans its
    /// process ends (until then they wait in the outbox).
    pub fn is_receiving(&self) -> bool {
        self.receiving.load(Ordering::Relaxed)
    }
}

/// `SpanExporter` is not dyn-compatible; this is the part of it used here.
trait Export: Send + Sync {
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

/// Drains a [`Ledger`]'s outbox into a span exporter: the spans this
/// process ended come straight from its transactions; entries nobody
/// claims (their process died) are found by periodic sweeps. An entry is
/// deleted only after the exporter reported success; failures are retried
/// with exponential backoff, so a collector that is away for a while loses
/// nothing (beyond [`LedgerLimits::max_outbox`](crate::LedgerLimits)).
///
/// A crash between the collector's acceptance and the deletion sends that
/// span again with the same ids: delivery is at least once, and `dspans
/// collector` drops such repeats.
pub struct OutboxExporter {
    ledger: Ledger,
    exporter: Box<dyn Export>,
    scope: InstrumentationScope,
    name: String,
    me: Exporter,
    queue: Option<mpsc::Receiver<Pending>>,
    sender: Option<mpsc::Sender<Pending>>,
    options: ExporterOptions,
    stats: Arc<ExporterStats>,
}

/// The running exporters as last seen: the presence directory's child
/// version and children.
#[derive(Debug, Default)]
struct Presence {
    version: Option<i32>,
    sessions: HashSet<String>,
}

impl std::fmt::Debug for OutboxExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxExporter")
            .field("name", &self.name)
            .field("ledger", &self.ledger)
            .finish()
    }
}

impl OutboxExporter {
    /// An exporter for `ledger`'s outbox, sending through `exporter` with
    /// `tracer`'s resource (spans that name no scope of their own go under
    /// its scope). `name` marks the spans it sends. The first exporter of a
    /// ledger to run also receives the spans that ledger's transactions end
    /// from then on.
    pub fn new<E: SpanExporter + 'static>(
        ledger: &Ledger,
        mut exporter: E,
        tracer: &DurableTracer,
        name: impl Into<String>,
        options: ExporterOptions,
    ) -> OutboxExporter {
        exporter.set_resource(tracer.resource());
        let scope = tracer.scope().clone();
        let name = name.into();
        let (sender, queue) = mpsc::channel(ledger.limits().local_queue.max(1));
        OutboxExporter {
            me: Exporter::new(&name, ledger.store().session_id()),
            queue: Some(queue),
            sender: Some(sender),
            ledger: ledger.clone(),
            exporter: Box::new(exporter),
            scope,
            name,
            options,
            stats: Arc::default(),
        }
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<ExporterStats> {
        self.stats.clone()
    }

    /// Exports until `shutdown` resolves, then tries for
    /// [`ExporterOptions::drain_timeout`] to send what it holds; anything
    /// left stays in the outbox (marked, claims released) for other
    /// exporters.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let opts = self.options;
        let mut pending: Vec<Pending> = Vec::new();
        let mut first_pending_at = Instant::now();
        let mut backoff = opts.min_backoff;
        let mut retry_at: Option<Instant> = None;
        let mut next_sweep = Instant::now();
        let mut next_orphans = opts.orphan_interval.map(|i| Instant::now() + i);
        let mut undeleted: Vec<String> = Vec::new();
        let mut presence = self.start().await;
        loop {
            let now = Instant::now();
            let healthy = retry_at.is_none();
            if healthy {
                self.take_queued(&mut pending, &mut first_pending_at);
            }
            if !healthy && now >= next_sweep {
                // While exports fail nothing is taken over, but the outbox is
                // still counted, so its limit holds through an outage.
                if let Err(error) = self.count_outbox().await {
                    tracing::warn!(%error, "cannot count the outbox");
                }
                next_sweep = Instant::now() + opts.sweep_interval;
            }
            if healthy && now >= next_sweep {
                self.retry_deletions(&mut undeleted).await;
                if let Err(error) = self.watch_exporters(&mut presence).await {
                    tracing::warn!(%error, "cannot look for exporters that are gone");
                }
                if pending.len() < opts.max_batch {
                    let was_empty = pending.is_empty();
                    if let Err(error) = self.sweep(&mut pending).await {
                        tracing::warn!(%error, "outbox sweep failed");
                    }
                    if was_empty && !pending.is_empty() {
                        first_pending_at = Instant::now();
                    }
                }
                next_sweep = Instant::now() + opts.sweep_interval;
            }
            if let (true, Some(at)) = (healthy, next_orphans) {
                if now >= at {
                    match self.ledger.sweep_orphans().await {
                        Ok(n) => {
                            self.stats.orphans.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(error) => tracing::warn!(%error, "orphan sweep failed"),
                    }
                    next_orphans = opts.orphan_interval.map(|i| Instant::now() + i);
                }
            }
            let stale = self.ledger.take_stale_sent(opts.deletion_delay);
            if !stale.is_empty() {
                self.delete_entries(&stale, false, &mut undeleted).await;
            }
            let due = !pending.is_empty()
                && match retry_at {
                    Some(at) => now >= at,
                    None => {
                        pending.len() >= opts.max_batch
                            || now >= first_pending_at + opts.batch_delay
                    }
                };
            if due {
                match self.send(&pending).await {
                    Ok(()) => {
                        self.delete_sent(&pending, &mut undeleted).await;
                        pending.clear();
                        backoff = opts.min_backoff;
                        retry_at = None;
                    }
                    Err(error) => {
                        self.stats.failed_exports.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            spans = pending.len(),
                            retry_in_ms = backoff.as_millis() as u64,
                            "span export failed; kept in the outbox: {error}"
                        );
                        retry_at = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(opts.max_backoff);
                    }
                }
                continue;
            }
            let mut wake = next_sweep;
            if let Some(at) = retry_at {
                wake = wake.min(at);
            } else if !pending.is_empty() {
                wake = wake.min(first_pending_at + opts.batch_delay);
            }
            if let Some(at) = next_orphans {
                wake = wake.min(at);
            }
            if let Some(at) = self.ledger.sent_due_at(opts.deletion_delay) {
                wake = wake.min(at);
            }
            let room = healthy && pending.len() < opts.max_batch;
            tokio::select! {
                _ = &mut shutdown => break,
                received = recv(&mut self.queue), if room => {
                    if let Some(p) = received {
                        if pending.is_empty() {
                            first_pending_at = Instant::now();
                        }
                        pending.push(p);
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        self.drain(pending, undeleted).await;
    }

    /// Announces this exporter, takes the spans its transactions end from
    /// now on, and marks for sending the spans that exporters now gone
    /// (this process's predecessor under the same name among them) had
    /// ended and not sent. Problems are logged: the sweeps try again.
    async fn start(&mut self) -> Presence {
        let mut presence = Presence::default();
        let announced = async {
            self.ledger.ensure_layout().await?;
            let path = self.ledger.paths().exporter(&self.me.session);
            match self
                .ledger
                .store()
                .create(&path, self.name.as_bytes(), CreateMode::Ephemeral)
                .await
            {
                Ok(_) => Ok(()),
                Err(error) if error.is_node_exists() => Ok(()),
                Err(error) => Err(error),
            }
        };
        match announced.await {
            Ok(()) => {
                // Spans are marked as this exporter's only once others can
                // see it running.
                if let Some(sender) = self.sender.take() {
                    if self.ledger.attach(self.me.id(), sender) {
                        self.stats.receiving.store(true, Ordering::Relaxed);
                    } else {
                        tracing::debug!(name = %self.name, "another exporter takes this ledger's spans");
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot announce the span exporter; spans ended here wait in the outbox");
            }
        }
        if let Err(error) = self.free_predecessor_claims().await {
            tracing::warn!(%error, "cannot look for claims of a previous run");
        }
        if let Err(error) = self.watch_exporters(&mut presence).await {
            tracing::warn!(%error, "cannot look for exporters that are gone");
        }
        if let Err(error) = self.take_over().await {
            tracing::warn!(%error, "cannot look for spans of exporters that are gone");
            presence.version = None;
        }
        presence
    }

    /// Compares the running exporters with the last look; when one went
    /// away since, marks the spans it left. One round trip when nothing
    /// changed.
    async fn watch_exporters(&self, presence: &mut Presence) -> Result<(), StoreError> {
        let dir = self.ledger.paths().exporters_dir();
        let store = self.ledger.store();
        let Some(stat) = store.exists(&dir).await? else {
            return Ok(());
        };
        if presence.version == Some(stat.cversion) {
            return Ok(());
        }
        let sessions: HashSet<String> = self.ledger.keys(&dir).await?.into_iter().collect();
        let added = sessions.difference(&presence.sessions).count() as i64;
        // The child version counts creations and deletions: more changes
        // than new children means one went away, even one never seen.
        let changes = match presence.version {
            Some(version) => i64::from(stat.cversion) - i64::from(version),
            None => added,
        };
        let first_look = presence.version.is_none();
        presence.version = Some(stat.cversion);
        presence.sessions = sessions;
        if !first_look && changes > added {
            if let Err(error) = self.take_over().await {
                presence.version = None;
                return Err(error);
            }
        }
        Ok(())
    }

    /// Marks for any exporter the ended spans whose exporter is not running
    /// (or is this process's predecessor). Reads every entry, so it runs
    /// only at start and when an exporter went away.
    async fn take_over(&self) -> Result<(), StoreError> {
        let mut orphaned = Vec::new();
        for key in self.ledger.keys(&self.ledger.paths().open_dir()).await? {
            let Some(Entry::Ended(entry)) = self.ledger.read_entry(&key).await? else {
                continue;
            };
            let Some(by) = Exporter::parse(&entry.ended_by) else {
                continue; // no exporter: it has a marker
            };
            orphaned.push((key, by));
        }
        if orphaned.is_empty() {
            return Ok(());
        }
        // Running exporters are listed after the entries were read: an
        // exporter named in an entry announced itself before writing it,
        // so if it is missing now, it is gone.
        let running: HashSet<String> = self
            .ledger
            .keys(&self.ledger.paths().exporters_dir())
            .await?
            .into_iter()
            .collect();
        let mut marked = 0;
        for (key, by) in orphaned {
            let predecessor = by.name == self.me.name && by.session != self.me.session;
            if by == self.me || (running.contains(&by.session) && !predecessor) {
                continue;
            }
            self.ledger.add_marker(&key).await;
            marked += 1;
        }
        if marked > 0 {
            tracing::info!(
                spans = marked,
                "ended spans of exporters that are gone, marked for sending"
            );
        }
        Ok(())
    }

    /// Frees the claims that a dead process of the same name left: its
    /// session may outlive it by the session timeout, and the spans it
    /// claimed would wait that long.
    async fn free_predecessor_claims(&self) -> Result<(), StoreError> {
        let store = self.ledger.store();
        let paths = self.ledger.paths();
        let mine = self.me.id();
        let prefix = format!("{}\n", self.name);
        let mut freed = 0;
        for key in self.ledger.keys(&paths.claims_dir()).await? {
            let Some(node) = store.get(&paths.claim(&key)).await? else {
                continue;
            };
            let data = String::from_utf8_lossy(&node.data);
            if data.starts_with(&prefix) && data != mine {
                self.ledger.release_claim(&key).await;
                freed += 1;
            }
        }
        if freed > 0 {
            tracing::info!(claims = freed, name = %self.name, "freed the outbox claims of this process's previous run");
        }
        Ok(())
    }

    fn take_queued(&mut self, pending: &mut Vec<Pending>, first_at: &mut Instant) {
        let Some(queue) = self.queue.as_mut() else {
            return;
        };
        while pending.len() < self.options.max_batch {
            match queue.try_recv() {
                Ok(p) => {
                    if pending.is_empty() {
                        *first_at = Instant::now();
                    }
                    pending.push(p);
                }
                Err(_) => break,
            }
        }
    }

    async fn drain(mut self, mut pending: Vec<Pending>, mut undeleted: Vec<String>) {
        let deadline = Instant::now() + self.options.drain_timeout;
        let mut dummy = Instant::now();
        loop {
            self.take_queued(&mut pending, &mut dummy);
            if pending.is_empty() {
                break;
            }
            let sent = tokio::time::timeout_at(deadline, self.send(&pending)).await;
            match sent {
                Ok(Ok(())) => {
                    self.delete_sent(&pending, &mut undeleted).await;
                    pending.clear();
                }
                Ok(Err(error)) => {
                    tracing::warn!(
                        spans = pending.len(),
                        "span export failed at shutdown; left in the outbox: {error}"
                    );
                    break;
                }
                Err(_) => {
                    tracing::warn!(
                        spans = pending.len(),
                        "shutting down: spans left in the outbox for other exporters"
                    );
                    break;
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        if let Some(queue) = self.queue.as_mut() {
            queue.close();
            while let Ok(p) = queue.try_recv() {
                pending.push(p);
            }
        }
        // What is left goes to the outbox for other exporters.
        for p in &pending {
            if p.swept {
                self.ledger.release_claim(&p.key).await;
            } else {
                self.ledger.add_marker(&p.key).await;
                self.ledger.settled(1);
            }
        }
        let sent = self.ledger.take_stale_sent(Duration::ZERO);
        self.delete_entries(&sent, false, &mut undeleted).await;
        self.retry_deletions(&mut undeleted).await;
        if !undeleted.is_empty() {
            tracing::warn!(
                spans = undeleted.len(),
                "exported outbox entries left undeleted: they will be sent again"
            );
        }
        let _ = self.exporter.shutdown();
    }

    async fn send(&self, pending: &[Pending]) -> OTelSdkResult {
        let batch: Vec<SpanData> = pending
            .iter()
            .map(|p| p.span.clone().into_span_data(&self.scope))
            .collect();
        self.exporter.export(batch).await
    }

    /// Settles the spans the collector accepted: the entries of this
    /// process's own spans are left to its next transaction
    /// ([`ExporterOptions::deletion_delay`]); swept spans have their entry,
    /// outbox marker and claim deleted now. Keys whose entries could not be
    /// deleted go to `undeleted`, to be tried again (swept ones stay
    /// claimed meanwhile).
    async fn delete_sent(&self, pending: &[Pending], undeleted: &mut Vec<String>) {
        let (swept, own): (Vec<&Pending>, Vec<&Pending>) = pending.iter().partition(|p| p.swept);
        self.ledger.settled(own.len());
        self.ledger
            .defer_deletion(own.into_iter().map(|p| p.key.clone()));
        let swept: Vec<String> = swept.into_iter().map(|p| p.key.clone()).collect();
        self.delete_entries(&swept, true, undeleted).await;
        self.stats
            .exported
            .fetch_add(pending.len() as u64, Ordering::Relaxed);
    }

    /// Deletes the entries of sent spans (and, for swept ones, their
    /// outbox markers and claims).
    async fn delete_entries(&self, keys: &[String], swept: bool, undeleted: &mut Vec<String>) {
        // 100 spans per multi-operation keeps each one small.
        for chunk in keys.chunks(100) {
            let paths = self.ledger.paths();
            let mut ops = Vec::with_capacity(chunk.len());
            for key in chunk {
                ops.push(Op::delete(paths.open(key), None));
                if swept {
                    ops.push(Op::delete(paths.outbox(key), None));
                    ops.push(Op::delete(paths.claim(key), None));
                }
            }
            if self.ledger.store().multi(&ops).await.is_ok() {
                continue;
            }
            // One of them is gone already (a marker deleted by an earlier
            // attempt, a claim lost with a session), or the store failed:
            // one by one.
            for key in chunk {
                if !self.delete_entry(key, swept).await {
                    undeleted.push(key.clone());
                }
            }
        }
    }

    /// Deletes a sent span's entry, then its outbox marker and claim; false
    /// when something could not be deleted. The entry goes first: a marker
    /// left behind only leads a sweep to a missing entry.
    async fn delete_entry(&self, key: &str, swept: bool) -> bool {
        let paths = self.ledger.paths();
        let mut paths_to_delete = vec![paths.open(key)];
        if swept {
            paths_to_delete.push(paths.outbox(key));
        }
        for path in paths_to_delete {
            match self.ledger.store().delete(&path, None).await {
                Ok(()) | Err(StoreError::NoNode { .. }) => {}
                Err(error) => {
                    tracing::warn!(%error, %path, "sent span's entry not deleted yet; will try again");
                    return false;
                }
            }
        }
        if swept {
            self.ledger.release_claim(key).await;
        }
        true
    }

    /// Tries again to delete entries whose deletion failed.
    async fn retry_deletions(&self, undeleted: &mut Vec<String>) {
        let keys = std::mem::take(undeleted);
        for key in keys {
            // Marker and claim too: deleting what is missing is harmless.
            if !self.delete_entry(&key, true).await {
                undeleted.push(key);
            }
        }
    }

    /// Updates the ledger's "full" state from the number of outbox markers.
    async fn count_outbox(&self) -> Result<(), StoreError> {
        let keys = self.ledger.keys(&self.ledger.paths().outbox_dir()).await?;
        self.ledger.set_markers(keys.len());
        Ok(())
    }

    /// Lists the outbox markers, updates the ledger's "full" state, and
    /// claims the spans nobody else holds.
    async fn sweep(&self, pending: &mut Vec<Pending>) -> Result<(), StoreError> {
        let paths = self.ledger.paths();
        let keys = self.ledger.keys(&paths.outbox_dir()).await?;
        self.ledger.set_markers(keys.len());
        if keys.is_empty() {
            return Ok(());
        }
        let claimed: HashSet<String> = self
            .ledger
            .keys(&paths.claims_dir())
            .await?
            .into_iter()
            .collect();
        let store = self.ledger.store();
        let mut taken = 0u64;
        for key in keys.into_iter().filter(|k| !claimed.contains(k)) {
            if pending.len() >= self.options.max_batch {
                break;
            }
            match store
                .create(
                    &paths.claim(&key),
                    self.me.id().as_bytes(),
                    CreateMode::Ephemeral,
                )
                .await
            {
                Ok(_) => {}
                Err(e) if e.is_node_exists() => continue,
                Err(e) => return Err(e),
            }
            match self.ledger.read_entry(&key).await? {
                Some(Entry::Ended(entry)) => {
                    pending.push(Pending {
                        key,
                        span: entry.finished,
                        swept: true,
                    });
                    taken += 1;
                }
                Some(Entry::Open(_)) => {
                    // A marker without an ended span: left by an end whose
                    // transaction failed after writing it.
                    let _ = store.delete(&paths.outbox(&key), None).await;
                    self.ledger.release_claim(&key).await;
                }
                None => {
                    // Already sent (a marker left by a failed deletion), or
                    // unreadable (`read_entry` logged it).
                    if store.exists(&paths.open(&key)).await?.is_some() {
                        self.ledger.count_drop(&key, "?", "its entry is unreadable");
                        let _ = store.delete(&paths.open(&key), None).await;
                    }
                    let _ = store.delete(&paths.outbox(&key), None).await;
                    self.ledger.release_claim(&key).await;
                }
            }
        }
        if taken > 0 {
            tracing::debug!(spans = taken, "outbox spans taken over");
            self.stats.swept.fetch_add(taken, Ordering::Relaxed);
        }
        Ok(())
    }
}

async fn recv(queue: &mut Option<mpsc::Receiver<Pending>>) -> Option<Pending> {
    match queue {
        Some(q) => q.recv().await,
        None => std::future::pending().await,
    }
}
