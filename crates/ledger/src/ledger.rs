//! [`Ledger`]: the span entries and the outbox, written in the caller's own
//! transactions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use dspans_store::{CreateMode, Op, OpResult, Store, StoreError};
use durable_spans::{FinishedSpan, SpanInfo};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::entry::{ended_bytes, Entry, OpenEntry};
use crate::paths::{span_key, LedgerPaths};

/// Bounds of a ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerLimits {
    /// Ended, unsent spans beyond which further ends are dropped (counted
    /// and logged) instead of queued, so an absent collector cannot fill the
    /// store: those this process's exporter holds plus the outbox markers
    /// (spans waiting for any exporter) at the last count. Default 20,000
    /// (about 20 MB of span data; a ZooKeeper listing of that many keys
    /// stays well under its 1 MB packet limit).
    pub max_outbox: usize,
    /// Spans this process holds in memory on their way to its own exporter.
    /// Beyond it, ended spans get an outbox marker and wait for the next
    /// sweep. Default 4,096.
    pub local_queue: usize,
}

impl Default for LedgerLimits {
    fn default() -> Self {
        LedgerLimits {
            max_outbox: 20_000,
            local_queue: 4_096,
        }
    }
}

/// A started span that has not ended, as listed by [`Ledger::open_spans`].
#[derive(Debug, Clone, PartialEq)]
pub struct OpenSpan {
    /// The span's key (its id in hex).
    pub key: String,
    /// The store path of the object the span belongs to.
    pub owner: String,
    /// The saved span.
    pub span: SpanInfo,
}

/// An ended span on its way to an exporter.
#[derive(Debug)]
pub(crate) struct Pending {
    pub key: String,
    pub span: FinishedSpan,
    /// Taken over from the outbox (it has a marker and this process's
    /// claim, both deleted with the entry), rather than handed over by this
    /// process's own transaction.
    pub swept: bool,
}

/// Spans to end in one transaction; see [`Ledger::commit`].
#[derive(Debug, Default)]
pub struct SpanEnds {
    spans: Vec<(FinishedSpan, bool)>,
}

impl SpanEnds {
    /// Adds a finished span (from `DurableTracer::finish_saved_span`);
    /// `None` (no or invalid span data) is ignored.
    pub fn push(&mut self, span: Option<FinishedSpan>) {
        if let Some(span) = span {
            self.spans.push((span, false));
        }
    }

    /// Adds a span that must still be open: if its open entry is gone,
    /// someone else ended it and this end is left out (orphan sweeps).
    pub(crate) fn push_open(&mut self, span: FinishedSpan) {
        self.spans.push((span, true));
    }

    /// Number of spans to end.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True when there is nothing to end.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// How one span's end is written; a retry adjusts it as it learns what
/// the store holds.
#[derive(Debug)]
struct EndPlan {
    key: String,
    span: FinishedSpan,
    require_open: bool,
    /// The outbox is full: the open entry is deleted, nothing is queued.
    drop: bool,
    /// The span has no entry (saved before the ledger was used): one is
    /// created in the ended state.
    create: bool,
    /// Any exporter may send it (this process has none attached).
    marker: bool,
    /// Still to be written at all.
    live: bool,
}

#[derive(Debug, Clone, Copy)]
enum Part {
    Entry,
    Marker,
}

/// Most owners of open entries kept in memory (about 100 bytes each).
pub(crate) const MAX_NOTED_OWNERS: usize = 100_000;

/// Most deletions of sent entries added to one caller's transaction.
const SENT_PER_COMMIT: usize = 100;

/// Entries of spans this process's exporter sent, waiting to be deleted
/// inside the next transaction this process commits anyway (a separate
/// write per export batch would contend with the caller's writes).
#[derive(Debug, Default)]
pub(crate) struct SentEntries {
    keys: Vec<String>,
    /// When the oldest of `keys` was sent.
    since: Option<Instant>,
}

pub(crate) struct Inner {
    pub store: Arc<dyn Store>,
    pub paths: LedgerPaths,
    pub limits: LedgerLimits,
    /// This process's running exporter: its id and its queue.
    pub local: OnceLock<(String, mpsc::Sender<Pending>)>,
    pub full: AtomicBool,
    pub dropped: AtomicU64,
    /// Ended spans handed to this process's exporter and not yet sent.
    pub unsent: AtomicUsize,
    /// Outbox markers at the last count.
    pub markers: AtomicUsize,
    ready: AtomicBool,
    /// Owner paths of open entries this process wrote or already read
    /// (`None`: ended); an open entry changes only when it ends. Read and
    /// written through [`Ledger::owner_notes`].
    pub owners: Mutex<HashMap<String, Option<String>>>,
    /// Sent spans whose entries wait for deletion.
    pub sent: Mutex<SentEntries>,
}

/// The open-span entries and outbox of one store root. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("root", &self.inner.paths.root())
            .finish()
    }
}

impl Ledger {
    /// A ledger under `root` with default limits. Spans it ends wait in the
    /// outbox for any process's [`OutboxExporter`](crate::OutboxExporter)
    /// until one is attached to this ledger.
    pub fn new(store: Arc<dyn Store>, root: impl Into<String>) -> Ledger {
        Ledger::with_limits(store, root, LedgerLimits::default())
    }

    /// A ledger with other limits.
    pub fn with_limits(
        store: Arc<dyn Store>,
        root: impl Into<String>,
        limits: LedgerLimits,
    ) -> Ledger {
        Ledger {
            inner: Arc::new(Inner {
                store,
                paths: LedgerPaths::new(root),
                limits,
                local: OnceLock::new(),
                full: AtomicBool::new(false),
                dropped: AtomicU64::new(0),
                unsent: AtomicUsize::new(0),
                markers: AtomicUsize::new(0),
                ready: AtomicBool::new(false),
                owners: Mutex::new(HashMap::new()),
                sent: Mutex::new(SentEntries::default()),
            }),
        }
    }

    /// Its store paths.
    pub fn paths(&self) -> &LedgerPaths {
        &self.inner.paths
    }

    /// Its store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Its limits.
    pub fn limits(&self) -> LedgerLimits {
        self.inner.limits
    }

    /// The operation that records a started span as open and owned by the
    /// object at `owner`. Put it in the transaction that writes the owner,
    /// and run that through [`commit`](Self::commit) (which creates the
    /// ledger's directories on first use).
    ///
    /// Spans that are not sampled are not tracked (`None`): they would never
    /// be exported.
    pub fn open_op(&self, span: &SpanInfo, owner: &str) -> Option<Op> {
        if span.trace_flags & 1 == 0 {
            return None;
        }
        let entry = OpenEntry {
            owner: owner.to_string(),
            span: span.clone(),
        };
        let data = serde_json::to_vec(&entry).expect("an open entry always serializes");
        let key = span_key(span.span_id);
        let path = self.inner.paths.open(&key);
        self.remember_owner(key, entry.owner);
        Some(Op::create(path, data, CreateMode::Persistent))
    }

    /// Notes the owner of an entry this process writes, so that the orphan
    /// sweep does not read the entry back to learn it. A span's key names
    /// one span and the span one owner, so the note holds even if the
    /// transaction carrying the entry fails (the sweep only looks up keys it
    /// finds in the store). The sweep forgets keys that are gone; a process
    /// that never sweeps stops noting at [`MAX_NOTED_OWNERS`].
    fn remember_owner(&self, key: String, owner: String) {
        let mut owners = self.owner_notes();
        if owners.len() < MAX_NOTED_OWNERS {
            owners.insert(key, Some(owner));
        }
    }

    /// Marks noted entries as ended (by this process or, as a failed
    /// compare-and-set showed, elsewhere): the sweep has nothing to check
    /// for them.
    fn forget_owners<'k>(&self, keys: impl Iterator<Item = &'k String>) {
        let mut owners = self.owner_notes();
        for key in keys {
            if let Some(owner) = owners.get_mut(key) {
                *owner = None;
            }
        }
    }

    pub(crate) fn owner_notes(&self) -> MutexGuard<'_, HashMap<String, Option<String>>> {
        // The notes stay consistent even if a holder panicked.
        self.inner.owners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An empty set of spans to end.
    pub fn ends(&self) -> SpanEnds {
        SpanEnds::default()
    }

    /// Ended spans dropped because the outbox was full or an entry was
    /// unreadable, since this process started.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Whether ended, unsent spans reached [`LedgerLimits::max_outbox`]:
    /// those this process's exporter holds plus the outbox markers at the
    /// last count.
    pub fn is_full(&self) -> bool {
        let len =
            self.inner.unsent.load(Ordering::Relaxed) + self.inner.markers.load(Ordering::Relaxed);
        let full = len >= self.inner.limits.max_outbox;
        self.note_full(full, len);
        full
    }

    /// Records the outbox markers counted by a sweep.
    pub(crate) fn set_markers(&self, markers: usize) {
        self.inner.markers.store(markers, Ordering::Relaxed);
        self.is_full();
    }

    fn note_full(&self, full: bool, len: usize) {
        let was = self.inner.full.swap(full, Ordering::Relaxed);
        if full && !was {
            tracing::warn!(
                entries = len,
                limit = self.inner.limits.max_outbox,
                "span outbox is full (is the collector reachable?): ended spans are dropped until it drains"
            );
        } else if was && !full {
            tracing::info!(entries = len, "span outbox below its limit again");
        }
    }

    pub(crate) fn count_drop(&self, key: &str, name: &str, why: &str) {
        let total = self.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(span = %key, %name, dropped_total = total, "span dropped: {why}");
    }

    pub(crate) async fn ensure_layout(&self) -> Result<(), StoreError> {
        if self.inner.ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        let paths = &self.inner.paths;
        for dir in [
            paths.open_dir(),
            paths.outbox_dir(),
            paths.claims_dir(),
            paths.exporters_dir(),
        ] {
            self.inner.store.create_all(&dir, b"").await?;
        }
        self.inner.ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Runs `ops` and the ends of `ends` as one multi-operation: each
    /// sampled span's entry is rewritten in place, from open (version 0) to
    /// ended (the finished span and who sends it), by a compare-and-set on
    /// version 0. That one row change is the whole end: the exporter
    /// deletes the entry once the collector accepted the span. When the
    /// outbox has no room the span is dropped and its entry deleted. If any
    /// of `ops` fails (a lost compare-and-set), nothing is written and no
    /// span ends.
    ///
    /// A span without an entry (saved before the ledger was used) is still
    /// ended once; a span already ended by someone else is left out. The
    /// results of `ops` come first, in order. With an exporter running in
    /// this process, the spans go straight to it; otherwise each gets an
    /// outbox marker for any exporter.
    pub async fn commit(&self, ops: Vec<Op>, ends: SpanEnds) -> Result<Vec<OpResult>, StoreError> {
        Ok(self.commit_counted(ops, ends).await?.0)
    }

    /// [`commit`](Self::commit), also telling how many spans it ended.
    pub(crate) async fn commit_counted(
        &self,
        ops: Vec<Op>,
        ends: SpanEnds,
    ) -> Result<(Vec<OpResult>, usize), StoreError> {
        if ops.is_empty() && ends.is_empty() {
            return Ok((Vec::new(), 0));
        }
        // Only a transaction of the caller's own carries deletions of sent
        // entries: one made for them alone is the exporter's fallback.
        let mut sent = if ops.is_empty() {
            Vec::new()
        } else {
            self.take_sent(SENT_PER_COMMIT)
        };
        let committed = self.commit_with_sent(ops, ends, &mut sent).await;
        if committed.is_err() {
            self.return_sent(sent);
        }
        committed
    }

    async fn commit_with_sent(
        &self,
        ops: Vec<Op>,
        ends: SpanEnds,
        sent: &mut Vec<String>,
    ) -> Result<(Vec<OpResult>, usize), StoreError> {
        self.ensure_layout().await?;
        let local = self.inner.local.get();
        let full = !ends.is_empty() && self.is_full();
        let mut plans: Vec<EndPlan> = Vec::with_capacity(ends.spans.len());
        for (span, require_open) in ends.spans {
            // Unsampled spans were never tracked and are never exported.
            let key = span_key(span.span_id);
            let sampled = span.trace_flags & 1 == 1;
            if sampled && full {
                self.count_drop(&key, &span.name, "the span outbox is full");
            }
            plans.push(EndPlan {
                key,
                span,
                require_open,
                drop: full,
                create: false,
                marker: local.is_none(),
                live: sampled,
            });
        }
        let ended_by = local.map(|(id, _)| id.as_str()).unwrap_or("");
        // Each retry settles one part of one span or drops one sent
        // entry, so this ends.
        let attempts = 1 + 3 * plans.len() + sent.len();
        let mut results = None;
        for _ in 0..attempts {
            let (mut all, parts) = self.build(&ops, &plans, ended_by);
            let sent_from = all.len();
            all.extend(
                sent.iter()
                    .map(|key| Op::delete(self.inner.paths.open(key), None)),
            );
            match self.inner.store.multi(&all).await {
                Ok(r) => {
                    results = Some(r);
                    break;
                }
                Err(StoreError::Multi { index, source }) if index >= sent_from => {
                    // Gone already (a takeover elsewhere sent it again), or
                    // not deletable now: the caller's change must not wait
                    // for it.
                    let key = sent.remove(index - sent_from);
                    if !matches!(*source, StoreError::NoNode { .. }) {
                        tracing::debug!(span = %key, error = %source, "sent span's entry not deleted with this commit");
                        self.return_sent(vec![key]);
                    }
                }
                Err(StoreError::Multi { index, source }) if index >= ops.len() => {
                    let (plan_index, part) = parts[index - ops.len()];
                    let plan = &mut plans[plan_index];
                    match (part, source.as_ref()) {
                        (Part::Entry, StoreError::NoNode { .. })
                            if plan.require_open || plan.drop =>
                        {
                            plan.live = false;
                        }
                        (Part::Entry, StoreError::NoNode { .. }) => {
                            tracing::debug!(span = %plan.key, "span has no entry; ended without one");
                            plan.create = true;
                        }
                        (Part::Entry, StoreError::NodeExists { .. }) => plan.create = false,
                        (Part::Entry, StoreError::BadVersion { .. }) => {
                            // An orphan sweep racing a normal end is
                            // expected; anything else is worth a warning.
                            if plan.require_open || plan.drop {
                                tracing::debug!(span = %plan.key, "span already ended; left alone");
                            } else {
                                tracing::warn!(span = %plan.key, name = %plan.span.name,
                                    "span already ended elsewhere; not ended again");
                            }
                            plan.live = false;
                        }
                        // A marker left from an earlier end of the span:
                        // it serves this end as well.
                        (Part::Marker, StoreError::NodeExists { .. }) => plan.marker = false,
                        _ => return Err(StoreError::Multi { index, source }),
                    }
                    if ops.is_empty() && plans.iter().all(|p| !p.live) {
                        return Ok((Vec::new(), 0));
                    }
                }
                Err(error) => return Err(error),
            }
        }
        let Some(mut results) = results else {
            return Err(StoreError::InvalidArgument(
                "span ends could not be written after retries".to_string(),
            ));
        };
        results.truncate(ops.len());
        self.forget_owners(plans.iter().map(|p| &p.key));
        let ended = plans.iter().filter(|p| p.live && !p.drop).count();
        if let Some((_, queue)) = local {
            for plan in plans.into_iter().filter(|p| p.live && !p.drop) {
                let key = plan.key.clone();
                self.inner.unsent.fetch_add(1, Ordering::Relaxed);
                let handed = queue.try_send(Pending {
                    key: plan.key,
                    span: plan.span,
                    swept: false,
                });
                if handed.is_err() {
                    // The exporter is behind (or stopped): any exporter's
                    // sweep sends it.
                    self.inner.unsent.fetch_sub(1, Ordering::Relaxed);
                    self.add_marker(&key).await;
                }
            }
        }
        Ok((results, ended))
    }

    fn build(
        &self,
        ops: &[Op],
        plans: &[EndPlan],
        ended_by: &str,
    ) -> (Vec<Op>, Vec<(usize, Part)>) {
        let paths = &self.inner.paths;
        let mut all = ops.to_vec();
        let mut parts = Vec::new();
        for (i, plan) in plans.iter().enumerate().filter(|(_, p)| p.live) {
            let entry = paths.open(&plan.key);
            if plan.drop {
                all.push(Op::delete(entry, Some(0)));
                parts.push((i, Part::Entry));
                continue;
            }
            let data = ended_bytes(if plan.marker { "" } else { ended_by }, &plan.span);
            if plan.create {
                // Created and then moved past version 0 in one go, so a
                // later end finds it ended.
                all.push(Op::create(
                    entry.clone(),
                    data.clone(),
                    CreateMode::Persistent,
                ));
                parts.push((i, Part::Entry));
            }
            all.push(Op::set(entry, data, Some(0)));
            parts.push((i, Part::Entry));
            if plan.marker {
                all.push(Op::create(
                    paths.outbox(&plan.key),
                    Vec::new(),
                    CreateMode::Persistent,
                ));
                parts.push((i, Part::Marker));
            }
        }
        (all, parts)
    }

    /// Hands over the keys of sent spans whose entries are to be deleted
    /// by this process's next transaction.
    pub(crate) fn defer_deletion(&self, keys: impl IntoIterator<Item = String>) {
        let mut sent = self.sent_entries();
        let before = sent.keys.len();
        sent.keys.extend(keys);
        if before == 0 && !sent.keys.is_empty() {
            sent.since = Some(Instant::now());
        }
    }

    fn sent_entries(&self) -> MutexGuard<'_, SentEntries> {
        // The list stays consistent even if a holder panicked.
        self.inner.sent.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_sent(&self, most: usize) -> Vec<String> {
        let mut sent = self.sent_entries();
        let n = most.min(sent.keys.len());
        let taken: Vec<String> = sent.keys.drain(..n).collect();
        if sent.keys.is_empty() {
            sent.since = None;
        }
        taken
    }

    fn return_sent(&self, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        let mut sent = self.sent_entries();
        sent.since.get_or_insert_with(Instant::now);
        sent.keys.splice(0..0, keys);
    }

    /// When the oldest sent entry waiting for deletion is `delay` old
    /// (`None`: none waits).
    pub(crate) fn sent_due_at(&self, delay: Duration) -> Option<Instant> {
        self.sent_entries().since.map(|since| since + delay)
    }

    /// Takes every sent entry waiting for deletion once the oldest waited
    /// `delay` (all of them with a zero delay): no transaction of this
    /// process carried them, so the exporter deletes them itself.
    pub(crate) fn take_stale_sent(&self, delay: Duration) -> Vec<String> {
        match self.sent_due_at(delay) {
            Some(due) if Instant::now() >= due => self.take_sent(usize::MAX),
            _ => Vec::new(),
        }
    }

    /// Puts an ended span's outbox marker, so that any exporter sends it.
    pub(crate) async fn add_marker(&self, key: &str) {
        let path = self.inner.paths.outbox(key);
        match self
            .inner
            .store
            .create(&path, b"", CreateMode::Persistent)
            .await
        {
            Ok(_) => {}
            Err(error) if error.is_node_exists() => {}
            Err(error) => {
                tracing::warn!(%error, %path, "outbox marker not written; the span is sent when its exporter is found gone")
            }
        }
    }

    pub(crate) async fn release_claim(&self, key: &str) {
        let path = self.inner.paths.claim(key);
        match self.inner.store.delete(&path, None).await {
            Ok(()) | Err(StoreError::NoNode { .. }) => {}
            Err(error) => tracing::debug!(%error, %path, "claim not released (its session will)"),
        }
    }

    /// The keys under one of the ledger's directories (none before first use).
    pub(crate) async fn keys(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        match self.inner.store.children(dir).await {
            Ok(keys) => Ok(keys),
            Err(StoreError::NoNode { .. }) => Ok(Vec::new()),
            Err(error) => Err(error),
        }
    }

    /// Reads a span's entry (`None`: gone, or unreadable and logged).
    pub(crate) async fn read_entry(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let path = self.inner.paths.open(key);
        let Some(node) = self.inner.store.get(&path).await? else {
            return Ok(None);
        };
        match Entry::decode(&node.data) {
            Ok(entry) => Ok(Some(entry)),
            Err(error) => {
                tracing::warn!(%path, %error, "unreadable span entry; skipped");
                Ok(None)
            }
        }
    }

    /// Every open span, oldest start first. Ended spans waiting for export
    /// are not listed. Reads every entry.
    pub async fn open_spans(&self) -> Result<Vec<OpenSpan>, StoreError> {
        let mut spans = Vec::new();
        for key in self.keys(&self.inner.paths.open_dir()).await? {
            if let Some(Entry::Open(OpenEntry { owner, span })) = self.read_entry(&key).await? {
                spans.push(OpenSpan { key, owner, span });
            }
        }
        spans.sort_by_key(|s| s.span.start_time);
        Ok(spans)
    }

    /// Number of ended spans waiting for export. Reads every entry.
    pub async fn outbox_len(&self) -> Result<usize, StoreError> {
        Ok(self.counts().await?.1)
    }

    /// Numbers of open spans and of ended spans waiting for export, from
    /// one read of every entry.
    pub async fn counts(&self) -> Result<(usize, usize), StoreError> {
        let (mut open, mut ended) = (0, 0);
        for key in self.keys(&self.inner.paths.open_dir()).await? {
            match self.read_entry(&key).await? {
                Some(Entry::Open(_)) => open += 1,
                Some(Entry::Ended(_)) => ended += 1,
                None => {}
            }
        }
        Ok((open, ended))
    }

    /// Registers this process's running exporter (`exporter` is its
    /// [`Exporter::id`](crate::entry::Exporter::id)); false when another
    /// one already is.
    pub(crate) fn attach(&self, exporter: String, queue: mpsc::Sender<Pending>) -> bool {
        self.inner.local.set((exporter, queue)).is_ok()
    }

    /// This process's spans that its exporter sent or handed to the outbox.
    pub(crate) fn settled(&self, spans: usize) {
        let _ = self
            .inner
            .unsent
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(spans))
            });
    }
}
