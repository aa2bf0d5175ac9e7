//! [`Ledger`]: a process's view of the span entries of one store root:
//! writing open entries, reading them back, and the bounds of the outbox.
//! Ending spans is the `commit` module's, ending orphans the `orphans`
//! module's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use dspans_store::{CreateMode, Op, Store};
use durable_spans::SpanInfo;

use crate::entries::Entries;
use crate::entry::{open_bytes, Entry, OpenEntry};
use crate::error::LedgerError;
use crate::handoff::Handoff;
use crate::paths::{span_key, LedgerPaths};

/// Bounds of a ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerLimits {
    /// Ended, unsent spans beyond which further ends are dropped (counted
    /// and logged) instead of queued, so an absent collector cannot fill the
    /// store: those this process's sender holds plus the unassigned markers
    /// (spans waiting for any sender) at its last count. Default 20,000
    /// (about 20 MB of span data; a ZooKeeper listing of that many keys
    /// stays well under its 1 MB packet limit).
    pub max_outbox: usize,
}

impl Default for LedgerLimits {
    fn default() -> Self {
        LedgerLimits { max_outbox: 20_000 }
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

/// Most owners of open entries kept in memory (about 100 bytes each).
pub(crate) const MAX_NOTED_OWNERS: usize = 100_000;

/// Owner paths of entries, by key: `Some` for open entries this process
/// wrote or already read, `None` once ended. An open entry changes only
/// when it ends, so a note stays true.
pub(crate) type OwnerNotes = HashMap<String, Option<String>>;

pub(crate) struct Shared {
    pub entries: Entries,
    pub limits: LedgerLimits,
    pub full: AtomicBool,
    pub dropped: AtomicU64,
    /// Read and written through [`Ledger::owner_notes`].
    owners: Mutex<OwnerNotes>,
}

/// The span entries of one store root, as one process writes them: open
/// entries with their owners, ends in the caller's own transactions
/// ([`commit`](Self::commit)), and, through its [`Handoff`], the spans it
/// ended on their way to this process's sender. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    pub(crate) shared: Arc<Shared>,
    pub(crate) handoff: Option<Handoff>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("root", &self.paths().root())
            .field("handoff", &self.handoff)
            .finish()
    }
}

impl Ledger {
    /// A ledger under `root` with default limits. The spans it ends wait as
    /// unassigned for any process's [`OutboxSender`](crate::OutboxSender)
    /// unless it hands them to one of its own ([`with_handoff`](Self::with_handoff)).
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
            shared: Arc::new(Shared {
                entries: Entries::new(store, LedgerPaths::new(root)),
                limits,
                full: AtomicBool::new(false),
                dropped: AtomicU64::new(0),
                owners: Mutex::new(HashMap::new()),
            }),
            handoff: None,
        }
    }

    /// Hands the spans this ledger ends to the sender behind `handoff`
    /// (this process's [`OutboxSender`](crate::OutboxSender), same root).
    pub fn with_handoff(mut self, handoff: Handoff) -> Ledger {
        self.handoff = Some(handoff);
        self
    }

    /// Its store paths.
    pub fn paths(&self) -> &LedgerPaths {
        self.shared.entries.paths()
    }

    /// Its store.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.shared.entries.store()
    }

    /// Its limits.
    pub fn limits(&self) -> LedgerLimits {
        self.shared.limits
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
        let key = span_key(span.span_id);
        let path = self.paths().entry(&key);
        let data = open_bytes(owner, span);
        self.remember_owner(key, owner.to_string());
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
    pub(crate) fn forget_owners<'k>(&self, keys: impl Iterator<Item = &'k String>) {
        let mut owners = self.owner_notes();
        for key in keys {
            if let Some(owner) = owners.get_mut(key) {
                *owner = None;
            }
        }
    }

    pub(crate) fn owner_notes(&self) -> MutexGuard<'_, OwnerNotes> {
        // The notes stay consistent even if a holder panicked.
        self.shared.owners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ended spans dropped because the outbox was full, since this process
    /// started.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Whether ended, unsent spans reached [`LedgerLimits::max_outbox`]:
    /// those this process's sender holds plus the unassigned markers at its
    /// last count. Never, without a [`Handoff`]: nothing is counted then.
    pub fn is_full(&self) -> bool {
        let len = self.handoff.as_ref().map_or(0, Handoff::backlog);
        let full = len >= self.shared.limits.max_outbox;
        let was = self.shared.full.swap(full, Ordering::Relaxed);
        if full && !was {
            tracing::warn!(
                entries = len,
                limit = self.shared.limits.max_outbox,
                "span outbox is full (is the collector reachable?): ended spans are dropped until it drains"
            );
        } else if was && !full {
            tracing::info!(entries = len, "span outbox below its limit again");
        }
        full
    }

    pub(crate) fn count_drop(&self, key: &str, name: &str, why: &str) {
        let total = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(span = %key, %name, dropped_total = total, "span dropped: {why}");
    }

    /// Every open span, oldest start first. Ended spans waiting for export
    /// are not listed. Reads every entry.
    pub async fn open_spans(&self) -> Result<Vec<OpenSpan>, LedgerError> {
        let entries = &self.shared.entries;
        let mut spans = Vec::new();
        for key in entries.keys(&self.paths().entries_dir()).await? {
            if let Some(Entry::Open(OpenEntry { owner, span })) = entries.read(&key).await? {
                spans.push(OpenSpan { key, owner, span });
            }
        }
        spans.sort_by_key(|s| s.span.start_time);
        Ok(spans)
    }

    /// Number of ended spans waiting for export. Reads every entry.
    pub async fn outbox_len(&self) -> Result<usize, LedgerError> {
        Ok(self.counts().await?.1)
    }

    /// Numbers of open spans and of ended spans waiting for export, from
    /// one read of every entry.
    pub async fn counts(&self) -> Result<(usize, usize), LedgerError> {
        let entries = &self.shared.entries;
        let (mut open, mut ended) = (0, 0);
        for key in entries.keys(&self.paths().entries_dir()).await? {
            match entries.read(&key).await? {
                Some(Entry::Open(_)) => open += 1,
                Some(Entry::Ended(_)) => ended += 1,
                None => {}
            }
        }
        Ok((open, ended))
    }
}
