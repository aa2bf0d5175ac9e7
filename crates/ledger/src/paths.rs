//! Where the ledger's records live.

use dspans_store::join_path;

/// The store key of a span: its id as 16 lower-case hex digits (the W3C
/// form), so one span has one entry at most.
///
/// ```
/// assert_eq!(dspans_ledger::span_key(255), "00000000000000ff");
/// ```
pub fn span_key(span_id: u64) -> String {
    format!("{span_id:016x}")
}

/// The directories of a ledger root.
///
/// ```
/// let paths = dspans_ledger::LedgerPaths::new("/dspans/spans");
/// assert_eq!(paths.entry("00000000000000ff"), "/dspans/spans/entries/00000000000000ff");
/// assert_eq!(paths.sender("1a2b"), "/dspans/spans/senders/1a2b");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerPaths {
    root: String,
}

impl LedgerPaths {
    /// Paths under `root` (e.g. `/dspans/spans`).
    pub fn new(root: impl Into<String>) -> LedgerPaths {
        LedgerPaths { root: root.into() }
    }

    /// The root.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Parent of the span entries: one per span, open or ended, until the
    /// collector accepted the span.
    pub fn entries_dir(&self) -> String {
        join_path(&self.root, "entries")
    }

    /// Parent of the unassigned markers: ended spans that no running sender
    /// holds (their process had none, or it is gone), which any sender may
    /// claim.
    pub fn unassigned_dir(&self) -> String {
        join_path(&self.root, "unassigned")
    }

    /// Parent of the senders' claims on unassigned spans.
    pub fn claims_dir(&self) -> String {
        join_path(&self.root, "claims")
    }

    /// Parent of the running senders' presence nodes (ephemeral, named by
    /// store session).
    pub fn senders_dir(&self) -> String {
        join_path(&self.root, "senders")
    }

    /// The presence node of the sender on store session `session` (hex).
    pub fn sender(&self, session: &str) -> String {
        join_path(&self.senders_dir(), session)
    }

    /// The entry of a span.
    pub fn entry(&self, key: &str) -> String {
        join_path(&self.entries_dir(), key)
    }

    /// The unassigned marker of a span.
    pub fn unassigned(&self, key: &str) -> String {
        join_path(&self.unassigned_dir(), key)
    }

    /// The claim on a span's unassigned marker.
    pub fn claim(&self, key: &str) -> String {
        join_path(&self.claims_dir(), key)
    }

    /// Every directory, created on first use.
    pub(crate) fn dirs(&self) -> [String; 4] {
        [
            self.entries_dir(),
            self.unassigned_dir(),
            self.claims_dir(),
            self.senders_dir(),
        ]
    }
}
