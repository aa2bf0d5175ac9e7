//! Ending spans whose owning object is gone.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use dspans_store::validate_path;
use durable_spans::{DurableTracer, EndOptions, FinishedSpan, SpanInfo};
use opentelemetry::trace::Status;
use opentelemetry::{Key, KeyValue};

use crate::entry::Entry;
use crate::error::LedgerError;
use crate::ledger::Ledger;

impl Ledger {
    /// Ends, once, every open span whose owning object no longer exists:
    /// status ERROR, attribute `dspans.orphaned = true`, ended now (finished
    /// by `tracer`). Safe to run in any number of processes at once: a span
    /// is ended only by the compare-and-set that moves its entry out of the
    /// open state. Returns how many spans it ended.
    pub async fn sweep_orphans(&self, tracer: &DurableTracer) -> Result<usize, LedgerError> {
        let candidates = self.open_entry_owners().await?;
        let owners: Vec<String> = candidates.iter().map(|(_, owner)| owner.clone()).collect();
        let present = self.store().exists_all(&owners).await?;
        let mut ended = 0;
        // An owner is created with its span's entry, so one found missing
        // was deleted and stays gone.
        for ((key, owner), present) in candidates.into_iter().zip(present) {
            if !present {
                ended += self.end_orphan(tracer, key, &owner).await?;
            }
        }
        Ok(ended)
    }

    /// Runs [`sweep_orphans`](Self::sweep_orphans) every `interval` until
    /// `shutdown` resolves; failures are logged and tried again at the next
    /// turn.
    pub async fn sweep_orphans_every(
        &self,
        tracer: &DurableTracer,
        interval: Duration,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(interval) => {}
            }
            if let Err(error) = self.sweep_orphans(tracer).await {
                tracing::warn!(%error, "orphan sweep failed");
            }
        }
    }

    /// The keys and owners of the open entries, learnt once per entry: from
    /// the owner notes, or by reading the entry.
    async fn open_entry_owners(&self) -> Result<Vec<(String, String)>, LedgerError> {
        let entries = &self.shared.entries;
        let keys = entries.keys(&self.paths().entries_dir()).await?;
        {
            let live: HashSet<&String> = keys.iter().collect();
            self.owner_notes().retain(|key, _| live.contains(key));
        }
        let mut open = Vec::new();
        for key in keys {
            let noted = self.owner_notes().get(&key).cloned();
            let owner = match noted {
                Some(owner) => owner,
                None => {
                    let owner = match entries.read(&key).await? {
                        None => continue,
                        Some(Entry::Open(entry)) => Some(entry.owner),
                        Some(Entry::Ended(_)) => None,
                    };
                    self.owner_notes().insert(key.clone(), owner.clone());
                    owner
                }
            };
            // Ended entries wait for their sender; their owners may be long
            // gone.
            let Some(owner) = owner else {
                continue;
            };
            if let Err(error) = validate_path(&owner) {
                tracing::warn!(span = %key, %error, "open span names an impossible owner; left alone");
                continue;
            }
            open.push((key, owner));
        }
        Ok(open)
    }

    /// Ends the span of `key` as an orphan, if it is still open; 1 when
    /// this process ended it.
    async fn end_orphan(
        &self,
        tracer: &DurableTracer,
        key: String,
        owner: &str,
    ) -> Result<usize, LedgerError> {
        let finished = match self.shared.entries.read(&key).await? {
            Some(Entry::Open(entry)) => orphan_end(tracer, &entry.span, owner),
            _ => None,
        };
        let Some(span) = finished else {
            self.owner_notes().insert(key, None);
            return Ok(0);
        };
        let name = span.name.clone();
        let mut ends = self.ends();
        ends.push_open(span);
        let (_, n) = self.commit_counted(Vec::new(), ends).await?;
        if n > 0 {
            tracing::warn!(span = %key, %name, %owner, "ended an orphaned span (its owner is gone)");
        }
        Ok(n)
    }
}

/// The finished form of a saved span whose owner vanished (`None` for span
/// data without ids).
/// `error.type` is `orphaned`; `dspans.ended_by` is the sweeping
/// process's `service.instance.id`, when its resource has one.
fn orphan_end(tracer: &DurableTracer, info: &SpanInfo, owner: &str) -> Option<FinishedSpan> {
    let mut attributes = vec![
        KeyValue::new("dspans.orphaned", true),
        KeyValue::new("error.type", "orphaned"),
    ];
    if let Some(sweeper) = tracer.resource().get(&Key::new("service.instance.id")) {
        attributes.push(KeyValue::new("dspans.ended_by", sweeper));
    }
    let options = EndOptions::new()
        .status(Status::error(format!("owner {owner} is gone")))
        .attributes(attributes);
    tracer.finish_saved_span(Some(info), options)
}
