//! Ending spans whose owning object is gone.

use dspans_store::{validate_path, StoreError};
use durable_spans::{FinishedSpan, StatusData, Timestamp};
use opentelemetry::KeyValue;

use crate::entry::Entry;
use crate::ledger::Ledger;

impl Ledger {
    /// Ends, once, every open span whose owning object no longer exists:
    /// status ERROR, attribute `dspans.orphaned = true`, ended now. Safe to
    /// run in any number of processes at once: a span is ended only by the
    /// compare-and-set that moves its entry out of the open state. Returns
    /// how many spans it ended.
    pub async fn sweep_orphans(&self) -> Result<usize, StoreError> {
        let store = self.store().clone();
        let keys = self.keys(&self.paths().open_dir()).await?;
        {
            let mut owners = self.owner_notes();
            let live: std::collections::HashSet<&String> = keys.iter().collect();
            owners.retain(|key, _| live.contains(key));
        }
        // The owners of open entries, looked up together: one round trip
        // per chunk rather than one per open span.
        let mut candidates: Vec<(String, String)> = Vec::new();
        for key in keys {
            let cached = self.owner_notes().get(&key).cloned();
            let owner = match cached {
                Some(owner) => owner,
                None => {
                    let owner = match self.read_entry(&key).await? {
                        None => continue,
                        Some(Entry::Open(entry)) => Some(entry.owner),
                        Some(Entry::Ended(_)) => None,
                    };
                    self.owner_notes().insert(key.clone(), owner.clone());
                    owner
                }
            };
            // Ended entries wait for their exporter; their owners may be
            // long gone.
            let Some(owner) = owner else {
                continue;
            };
            if let Err(error) = validate_path(&owner) {
                tracing::warn!(span = %key, %error, "open span names an impossible owner; left alone");
                continue;
            }
            candidates.push((key, owner));
        }
        let owners: Vec<String> = candidates.iter().map(|(_, owner)| owner.clone()).collect();
        let present = store.exists_all(&owners).await?;
        let mut ended = 0;
        // An owner is created with its span's entry, so one found missing
        // was deleted and stays gone.
        for ((key, owner), present) in candidates.into_iter().zip(present) {
            if present {
                continue;
            }
            let entry = match self.read_entry(&key).await? {
                Some(Entry::Open(entry)) => entry,
                _ => {
                    self.owner_notes().insert(key.clone(), None);
                    continue;
                }
            };
            let span = orphan_end(entry.span, &owner);
            let name = span.name.clone();
            let mut ends = self.ends();
            ends.push_open(span);
            let (_, n) = self.commit_counted(Vec::new(), ends).await?;
            if n > 0 {
                tracing::warn!(span = %key, %name, %owner, "ended an orphaned span (its owner is gone)");
            }
            ended += n;
        }
        Ok(ended)
    }
}

/// The finished form of a saved span whose owner vanished.
fn orphan_end(info: durable_spans::SpanInfo, owner: &str) -> FinishedSpan {
    let mut attributes = info.attributes;
    attributes.push(KeyValue::new("dspans.orphaned", true));
    let now = Timestamp::now();
    FinishedSpan {
        name: info.name,
        trace_id: info.trace_id,
        span_id: info.span_id,
        trace_flags: info.trace_flags,
        parent: info.parent,
        kind: Default::default(),
        start_time: info.start_time,
        end_time: now.max(info.start_time),
        attributes,
        events: Vec::new(),
        links: info.links,
        status: StatusData::Error {
            description: format!("owner {owner} is gone"),
        },
        scope: None,
    }
}
