//! Where the ledger's entries live.

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

    /// Parent of the span entries (open, or ended and not yet sent).
    pub fn open_dir(&self) -> String {
        join_path(&self.root, "open")
    }

    /// Parent of the outbox markers: ended spans that any exporter may
    /// send (their ender had no exporter, or it is gone).
    pub fn outbox_dir(&self) -> String {
        join_path(&self.root, "outbox")
    }

    /// Parent of the exporters' claims on outbox markers.
    pub fn claims_dir(&self) -> String {
        join_path(&self.root, "claims")
    }

    /// Parent of the running exporters' presence nodes (ephemeral, named
    /// by store session).
    pub fn exporters_dir(&self) -> String {
        join_path(&self.root, "exporters")
    }

    /// The presence node of the exporter on store session `session` (hex).
    pub fn exporter(&self, session: &str) -> String {
        join_path(&self.exporters_dir(), session)
    }

    /// The entry of a span.
    pub fn open(&self, key: &str) -> String {
        join_path(&self.open_dir(), key)
    }

    /// The outbox marker of a span.
    pub fn outbox(&self, key: &str) -> String {
        join_path(&self.outbox_dir(), key)
    }

    /// The claim on a span's outbox marker.
    pub fn claim(&self, key: &str) -> String {
        join_path(&self.claims_dir(), key)
    }
}
