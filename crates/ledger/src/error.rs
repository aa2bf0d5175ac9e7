//! [`LedgerError`]: why a ledger operation failed.

use dspans_store::StoreError;

/// Why a ledger operation failed.
///
/// ```
/// use dspans_ledger::LedgerError;
/// use dspans_store::StoreError;
///
/// let lost = LedgerError::from(StoreError::Multi {
///     index: 0,
///     source: Box::new(StoreError::BadVersion { path: "/b/1".into(), expected: 3 }),
/// });
/// assert!(lost.store().is_some_and(|e| e.is_bad_version()));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The store refused or failed. When the caller's own operations of a
    /// [`Ledger::commit`](crate::Ledger::commit) fail (a lost
    /// compare-and-set), this is the store's [`StoreError::Multi`] naming
    /// the index of that operation among them.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ends of a commit kept meeting a store that changed under them;
    /// nothing of the commit was written.
    #[error("span ends could not be written after {attempts} attempts")]
    Unsettled {
        /// How many times the commit was tried.
        attempts: usize,
    },
}

impl LedgerError {
    /// The store's error, when the store refused or failed.
    pub fn store(&self) -> Option<&StoreError> {
        match self {
            LedgerError::Store(error) => Some(error),
            LedgerError::Unsettled { .. } => None,
        }
    }
}
