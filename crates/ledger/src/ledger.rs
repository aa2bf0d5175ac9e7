//! [`Ledger`]: the open entries and the outbox, written in the caller's own
//! transactions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use dspans_store::{CreateMode, Op, OpResult, Store, StoreError};
use durable_spans::{FinishedSpan, SpanInfo};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::paths::{span_key, LedgerPaths};

/// Bounds of a ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerLimits {
    /// Outbox entries beyond which ended spans are dropped (counted and
    /// logged) instead of queued, so an absent collector cannot fill the
    /// store. Default 20,000 (about 20 MB of span data; a ZooKeeper listing
    /// of that many keys stays well under its 1 MB packet limit).
    pub max_outbox: usize,
    /// Spans this process holds in memory on their way to its own exporter.
    /// Beyond it, entries are left in the store for the next sweep.
    /// Default 4,096.
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

/// What an open entry holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OpenEntry {
    pub owner: String,
    pub span: SpanInfo,
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

/// An ended span handed from a transaction to this process's exporter.
#[derive(Debug)]
pub(crate) struct Pending {
    pub key: String,
    pub span: FinishedSpan,
    /// Whether the span may still have an open entry, to be deleted with
    /// its outbox entry.
    pub open: bool,
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

/// How one span's end is written; flags drop to `false` as a retry learns
/// that a part does not apply.
#[derive(Debug)]
struct EndPlan {
    key: String,
    span: FinishedSpan,
    require_open: bool,
    check_open: bool,
    outbox: bool,
    claim: bool,
    /// Still to be written at all.
    live: bool,
}

#[derive(Debug, Clone, Copy)]
enum Part {
    Open,
    Outbox,
    Claim,
}

pub(crate) struct Inner {
    pub store: Arc<dyn Store>,
    pub paths: LedgerPaths,
    pub limits: LedgerLimits,
    pub local: OnceLock<(String, mpsc::Sender<Pending>)>,
    pub full: AtomicBool,
    pub dropped: AtomicU64,
    ready: AtomicBool,
    /// Owner paths of open entries already read (an entry never changes).
    pub owners: Mutex<HashMap<String, String>>,
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
                ready: AtomicBool::new(false),
                owners: Mutex::new(HashMap::new()),
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
        Some(Op::create(
            self.inner.paths.open(&span_key(span.span_id)),
            data,
            CreateMode::Persistent,
        ))
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

    /// Whether the last outbox sweep found the outbox at its limit.
    pub fn is_full(&self) -> bool {
        self.inner.full.load(Ordering::Relaxed)
    }

    pub(crate) fn set_full(&self, full: bool, len: usize) {
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
        for dir in [paths.open_dir(), paths.outbox_dir(), paths.claims_dir()] {
            self.inner.store.create_all(&dir, b"").await?;
        }
        self.inner.ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Runs `ops` and the ends of `ends` as one multi-operation: for each
    /// sampled span, its open entry is checked and its outbox entry created
    /// (the open entry is deleted once the span is sent; when the outbox has
    /// no room, the span is dropped and its open entry deleted now). If any
    /// of `ops` fails (a lost compare-and-set), nothing is written and no
    /// span ends.
    ///
    /// A span without an open entry (saved before the ledger was used) is
    /// still ended once; a span whose outbox entry already exists was ended
    /// by someone else and is left out. The results of `ops` come first, in
    /// order. With an exporter attached, the spans go straight to it.
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
        self.ensure_layout().await?;
        let local = self.inner.local.get();
        let full = self.is_full();
        let mut plans: Vec<EndPlan> = Vec::with_capacity(ends.spans.len());
        for (span, require_open) in ends.spans {
            // Unsampled spans were never tracked and are never exported.
            let key = span_key(span.span_id);
            let sampled = span.trace_flags & 1 == 1;
            if sampled && full {
                self.count_drop(&key, &span.name, "the span outbox is full");
            }
            let outbox = sampled && !full;
            plans.push(EndPlan {
                key,
                span,
                require_open,
                check_open: sampled,
                live: sampled,
                outbox,
                claim: outbox && local.is_some(),
            });
        }
        // Each retry drops one part, so this ends.
        let attempts = 1 + 3 * plans.len();
        let mut results = None;
        for _ in 0..attempts {
            let (all, parts) = self.build(&ops, &plans, local.map(|(name, _)| name.as_str()));
            match self.inner.store.multi(&all).await {
                Ok(r) => {
                    results = Some(r);
                    break;
                }
                Err(StoreError::Multi { index, source }) if index >= ops.len() => {
                    let (plan_index, part) = parts[index - ops.len()];
                    let plan = &mut plans[plan_index];
                    match (part, source.as_ref()) {
                        (Part::Open, StoreError::NoNode { .. }) if plan.require_open => {
                            plan.live = false;
                        }
                        (Part::Open, StoreError::NoNode { .. }) => {
                            tracing::debug!(span = %plan.key, "span has no open entry; ended without one");
                            plan.check_open = false;
                        }
                        (Part::Outbox, StoreError::NodeExists { .. }) => {
                            // An orphan sweep racing a normal end is
                            // expected; anything else is worth a warning.
                            if plan.require_open {
                                tracing::debug!(span = %plan.key, "span already ended; the sweep leaves it");
                            } else {
                                tracing::warn!(span = %plan.key, name = %plan.span.name,
                                    "span already in the outbox (ended elsewhere); not ended again");
                            }
                            plan.live = false;
                        }
                        (Part::Claim, StoreError::NodeExists { .. }) => plan.claim = false,
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
        let ended = plans.iter().filter(|p| p.live).count();
        if let Some((_, queue)) = local {
            for plan in plans.into_iter().filter(|p| p.live && p.claim) {
                let key = plan.key.clone();
                if queue
                    .try_send(Pending {
                        key: plan.key,
                        span: plan.span,
                        open: plan.check_open,
                    })
                    .is_err()
                {
                    // The exporter is behind: leave the entry to a sweep.
                    self.release_claim(&key).await;
                }
            }
        }
        Ok((results, ended))
    }

    fn build(
        &self,
        ops: &[Op],
        plans: &[EndPlan],
        claimer: Option<&str>,
    ) -> (Vec<Op>, Vec<(usize, Part)>) {
        let paths = &self.inner.paths;
        let mut all = ops.to_vec();
        let mut parts = Vec::new();
        for (i, plan) in plans.iter().enumerate().filter(|(_, p)| p.live) {
            // The open entry is only checked here (a read, no row written
            // on the path the caller waits for); the exporter deletes it
            // with the outbox entry once the span is sent. Until then the
            // outbox entry marks the span ended.
            // A span dropped for want of room has no outbox entry to mark
            // it ended, so its open entry goes now.
            if plan.check_open {
                let open = paths.open(&plan.key);
                all.push(if plan.outbox {
                    Op::check(open, 0)
                } else {
                    Op::delete(open, None)
                });
                parts.push((i, Part::Open));
            }
            if plan.outbox {
                all.push(Op::create(
                    paths.outbox(&plan.key),
                    plan.span.to_json(),
                    CreateMode::Persistent,
                ));
                parts.push((i, Part::Outbox));
            }
            if let (true, Some(name)) = (plan.claim, claimer) {
                all.push(Op::create(
                    paths.claim(&plan.key),
                    name.as_bytes().to_vec(),
                    CreateMode::Ephemeral,
                ));
                parts.push((i, Part::Claim));
            }
        }
        (all, parts)
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

    pub(crate) async fn read_open(&self, key: &str) -> Result<Option<OpenEntry>, StoreError> {
        let path = self.inner.paths.open(key);
        let Some(node) = self.inner.store.get(&path).await? else {
            return Ok(None);
        };
        match serde_json::from_slice::<OpenEntry>(&node.data) {
            Ok(entry) => Ok(Some(entry)),
            Err(error) => {
                tracing::warn!(%path, %error, "unreadable open span entry; skipped");
                Ok(None)
            }
        }
    }

    /// Every open span, oldest start first. Spans that have ended but wait
    /// in the outbox keep their open entry until they are sent; they are
    /// not listed.
    pub async fn open_spans(&self) -> Result<Vec<OpenSpan>, StoreError> {
        let mut spans = Vec::new();
        for key in self.open_keys().await? {
            if let Some(entry) = self.read_open(&key).await? {
                spans.push(OpenSpan {
                    key,
                    owner: entry.owner,
                    span: entry.span,
                });
            }
        }
        spans.sort_by_key(|s| s.span.start_time);
        Ok(spans)
    }

    /// Keys of the spans started and not yet ended: open entries without
    /// an outbox entry (an ended span keeps its open entry until it is
    /// sent). Two listings, no reads.
    pub async fn open_keys(&self) -> Result<Vec<String>, StoreError> {
        let ended: std::collections::HashSet<String> = self
            .keys(&self.inner.paths.outbox_dir())
            .await?
            .into_iter()
            .collect();
        let mut keys = self.keys(&self.inner.paths.open_dir()).await?;
        keys.retain(|key| !ended.contains(key));
        Ok(keys)
    }

    /// Number of ended spans waiting for export.
    pub async fn outbox_len(&self) -> Result<usize, StoreError> {
        Ok(self.keys(&self.inner.paths.outbox_dir()).await?.len())
    }

    /// Registers this process's exporter; returns the receiving side. Its
    /// claims hold [`claim_data`](Self::claim_data).
    pub(crate) fn attach(&self, name: &str) -> Option<mpsc::Receiver<Pending>> {
        let (tx, rx) = mpsc::channel(self.inner.limits.local_queue.max(1));
        self.inner
            .local
            .set((self.claim_data(name), tx))
            .ok()
            .map(|()| rx)
    }

    /// What a claim holds: the claimer's name and store session, so a
    /// process restarted under the same name recognises (and frees) the
    /// claims its dead predecessor's session still holds.
    pub(crate) fn claim_data(&self, name: &str) -> String {
        format!("{name}\n{:x}", self.inner.store.session_id())
    }
}
