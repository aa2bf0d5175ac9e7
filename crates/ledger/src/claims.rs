//! Claims: an [`OutboxSender`] takes unassigned spans (those no running
//! sender holds) into its batch, one claim each, so that one sender sends
//! each.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use dspans_store::{CreateMode, StoreError};

use crate::batch::{Batch, Outgoing};
use crate::entry::Entry;
use crate::sender::OutboxSender;

impl OutboxSender {
    /// Counts the unassigned markers, for the ledger's outbox limit.
    pub(crate) async fn count_unassigned(&self) -> Result<(), StoreError> {
        let dir = self.entries.paths().unassigned_dir();
        let keys = self.entries.keys(&dir).await?;
        self.inbox.count_unassigned(keys.len());
        Ok(())
    }

    /// Lists the unassigned markers (counting them, for the outbox limit)
    /// and claims those nobody else holds, up to the batch's room.
    pub(crate) async fn claim_unassigned(&self, batch: &mut Batch) -> Result<(), StoreError> {
        let paths = self.entries.paths();
        let keys = self.entries.keys(&paths.unassigned_dir()).await?;
        self.inbox.count_unassigned(keys.len());
        if keys.is_empty() {
            return Ok(());
        }
        let claimed: HashSet<String> = self
            .entries
            .keys(&paths.claims_dir())
            .await?
            .into_iter()
            .collect();
        let mut taken = 0u64;
        for key in keys.into_iter().filter(|k| !claimed.contains(k)) {
            if batch.is_full() {
                break;
            }
            if let Some(span) = self.claim(key).await? {
                batch.push(span);
                taken += 1;
            }
        }
        if taken > 0 {
            tracing::debug!(spans = taken, "outbox spans taken over");
            self.stats.swept.fetch_add(taken, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Claims one unassigned span and reads it; `None` when another sender
    /// was first, or there is nothing to send (its marker and claim are
    /// then cleared away).
    async fn claim(&self, key: String) -> Result<Option<Outgoing>, StoreError> {
        let store = self.entries.store();
        let paths = self.entries.paths();
        let me = self.me.text();
        match store
            .create(&paths.claim(&key), me.as_bytes(), CreateMode::Ephemeral)
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_node_exists() => return Ok(None),
            Err(e) => return Err(e),
        }
        match self.entries.read(&key).await? {
            Some(Entry::Ended(entry)) => {
                return Ok(Some(Outgoing {
                    key,
                    span: entry.finished,
                    claimed: true,
                }))
            }
            // A marker without an ended span: left by an end whose
            // transaction failed after writing it.
            Some(Entry::Open(_)) => {}
            // Already sent (a marker left by a failed deletion), or
            // unreadable (`read` logged it).
            None => {
                if store.exists(&paths.entry(&key)).await?.is_some() {
                    self.drop_unreadable(&key).await;
                }
            }
        }
        let _ = store.delete(&paths.unassigned(&key), None).await;
        self.entries.release_claim(&key).await;
        Ok(None)
    }

    async fn drop_unreadable(&self, key: &str) {
        let total = self.stats.unreadable.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(span = %key, name = "?", dropped_total = total, "span dropped: its entry is unreadable");
        let _ = self
            .entries
            .store()
            .delete(&self.entries.paths().entry(key), None)
            .await;
    }
}
