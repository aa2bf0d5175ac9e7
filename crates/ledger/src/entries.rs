//! [`Entries`]: the ledger's records in the store, as both sides reach
//! them: the committing [`Ledger`](crate::Ledger) and the
//! [`OutboxSender`](crate::OutboxSender).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dspans_store::{CreateMode, Store, StoreError};

use crate::entry::Entry;
use crate::paths::LedgerPaths;

/// The store and the paths of one ledger root. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Entries {
    store: Arc<dyn Store>,
    paths: LedgerPaths,
    /// The directories exist (created once per process).
    ready: Arc<AtomicBool>,
}

impl Entries {
    pub fn new(store: Arc<dyn Store>, paths: LedgerPaths) -> Entries {
        Entries {
            store,
            paths,
            ready: Arc::default(),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn paths(&self) -> &LedgerPaths {
        &self.paths
    }

    /// Creates the ledger's directories, once.
    pub async fn ensure_layout(&self) -> Result<(), StoreError> {
        if self.ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        for dir in self.paths.dirs() {
            self.store.create_all(&dir, b"").await?;
        }
        self.ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// The keys under one of the ledger's directories (none before first
    /// use).
    pub async fn keys(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        match self.store.children(dir).await {
            Ok(keys) => Ok(keys),
            Err(StoreError::NoNode { .. }) => Ok(Vec::new()),
            Err(error) => Err(error),
        }
    }

    /// Reads a span's entry (`None`: gone, or unreadable and logged).
    pub async fn read(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let path = self.paths.entry(key);
        let Some(node) = self.store.get(&path).await? else {
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

    /// Puts an ended span's unassigned marker, so that any sender sends it.
    /// A failure is logged: the span is then sent when its sender is found
    /// gone.
    pub async fn mark_unassigned(&self, key: &str) {
        let path = self.paths.unassigned(key);
        match self.store.create(&path, b"", CreateMode::Persistent).await {
            Ok(_) => {}
            Err(error) if error.is_node_exists() => {}
            Err(error) => {
                tracing::warn!(%error, %path, "outbox marker not written; the span is sent when its exporter is found gone")
            }
        }
    }

    /// Gives up this process's claim on an unassigned span.
    pub async fn release_claim(&self, key: &str) {
        let path = self.paths.claim(key);
        match self.store.delete(&path, None).await {
            Ok(()) | Err(StoreError::NoNode { .. }) => {}
            Err(error) => tracing::debug!(%error, %path, "claim not released (its session will)"),
        }
    }
}
