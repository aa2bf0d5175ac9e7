//! Delivery: an [`OutboxSender`] exports a batch and, once the collector
//! accepted it, deletes the batch's entries itself, in one multi-operation.

use std::sync::atomic::Ordering;

use dspans_store::{Op, StoreError};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::SpanData;
use tokio::time::Instant;

use crate::batch::{Batch, Outgoing};
use crate::sender::OutboxSender;

impl OutboxSender {
    /// Exports the batch; on success deletes its entries and empties it,
    /// on failure keeps it for a retry after the backoff.
    pub(crate) async fn send(&self, batch: &mut Batch, undeleted: &mut Vec<String>) {
        match self.export(&batch.spans).await {
            Ok(()) => {
                self.delete_accepted(&batch.spans, undeleted).await;
                batch.sent();
            }
            Err(error) => {
                self.stats.failed_exports.fetch_add(1, Ordering::Relaxed);
                let spans = batch.len();
                let wait = batch.failed();
                tracing::warn!(
                    spans,
                    retry_in_ms = wait.as_millis() as u64,
                    "span export failed; kept in the outbox: {error}"
                );
            }
        }
    }

    async fn export(&self, spans: &[Outgoing]) -> OTelSdkResult {
        let batch: Vec<SpanData> = spans
            .iter()
            .map(|s| s.span.clone().into_span_data(&self.scope))
            .collect();
        self.exporter.export(batch).await
    }

    /// Deletes the entries of spans the collector accepted (and, for
    /// claimed ones, their unassigned markers and claims) in one
    /// multi-operation, then counts them as exported. When that fails (one
    /// of them is gone already, a claim lost with a session, or the store
    /// failed) they are deleted one by one; keys whose entries could not be
    /// deleted go to `undeleted`, to be tried again (claimed ones stay
    /// claimed meanwhile).
    async fn delete_accepted(&self, spans: &[Outgoing], undeleted: &mut Vec<String>) {
        let paths = self.entries.paths();
        let mut ops = Vec::with_capacity(spans.len());
        for span in spans {
            ops.push(Op::delete(paths.entry(&span.key), None));
            if span.claimed {
                ops.push(Op::delete(paths.unassigned(&span.key), None));
                ops.push(Op::delete(paths.claim(&span.key), None));
            }
        }
        if self.entries.store().multi(&ops).await.is_err() {
            for span in spans {
                if !self.delete_one(&span.key, span.claimed).await {
                    undeleted.push(span.key.clone());
                }
            }
        }
        self.inbox
            .settled(spans.iter().filter(|s| !s.claimed).count());
        self.stats
            .exported
            .fetch_add(spans.len() as u64, Ordering::Relaxed);
    }

    /// Deletes a sent span's entry, then its unassigned marker and claim;
    /// false when something could not be deleted. The entry goes first: a
    /// marker left behind only leads a sweep to a missing entry.
    async fn delete_one(&self, key: &str, claimed: bool) -> bool {
        let paths = self.entries.paths();
        let mut doomed = vec![paths.entry(key)];
        if claimed {
            doomed.push(paths.unassigned(key));
        }
        for path in doomed {
            match self.entries.store().delete(&path, None).await {
                Ok(()) | Err(StoreError::NoNode { .. }) => {}
                Err(error) => {
                    tracing::warn!(%error, %path, "sent span's entry not deleted yet; will try again");
                    return false;
                }
            }
        }
        if claimed {
            self.entries.release_claim(key).await;
        }
        true
    }

    /// Tries again to delete entries whose deletion failed.
    pub(crate) async fn retry_deletions(&self, undeleted: &mut Vec<String>) {
        for key in std::mem::take(undeleted) {
            // Marker and claim too: deleting what is missing is harmless.
            if !self.delete_one(&key, true).await {
                undeleted.push(key);
            }
        }
    }

    /// Sends what is in hand for up to [`drain_timeout`](crate::SenderOptions::drain_timeout),
    /// then stops receiving and leaves the rest in the outbox: spans handed
    /// over get unassigned markers, claimed ones their claims released.
    pub(crate) async fn drain(mut self, mut batch: Batch, mut undeleted: Vec<String>) {
        let deadline = Instant::now() + self.options.drain_timeout;
        loop {
            self.take_queued(&mut batch);
            if batch.spans.is_empty() {
                break;
            }
            match tokio::time::timeout_at(deadline, self.export(&batch.spans)).await {
                Ok(Ok(())) => {
                    self.delete_accepted(&batch.spans, &mut undeleted).await;
                    batch.sent();
                }
                Ok(Err(error)) => {
                    tracing::warn!(
                        spans = batch.len(),
                        "span export failed at shutdown; left in the outbox: {error}"
                    );
                    break;
                }
                Err(_) => {
                    tracing::warn!(
                        spans = batch.len(),
                        "shutting down: spans left in the outbox for other exporters"
                    );
                    break;
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        let mut left = std::mem::take(&mut batch.spans);
        left.extend(self.inbox.close().into_iter().map(Outgoing::from));
        self.leave(&left).await;
        self.retry_deletions(&mut undeleted).await;
        if !undeleted.is_empty() {
            tracing::warn!(
                spans = undeleted.len(),
                "exported outbox entries left undeleted: they will be sent again"
            );
        }
        let _ = self.exporter.shutdown();
    }

    /// Leaves unsent spans to other senders.
    async fn leave(&self, spans: &[Outgoing]) {
        for span in spans {
            if span.claimed {
                self.entries.release_claim(&span.key).await;
            } else {
                self.entries.mark_unassigned(&span.key).await;
                self.inbox.settled(1);
            }
        }
    }
}
