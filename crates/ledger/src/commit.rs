//! [`Ledger::commit`]: ending spans in the caller's own transaction, then
//! handing them to this process's sender.

use dspans_store::{CreateMode, Op, OpResult, StoreError};
use durable_spans::FinishedSpan;

use crate::entry::ended_bytes;
use crate::error::LedgerError;
use crate::handoff::Handed;
use crate::ledger::Ledger;
use crate::paths::span_key;

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

/// How one span's end is written; a retry adjusts it as it learns what
/// the store holds.
#[derive(Debug)]
struct EndPlan {
    key: String,
    span: FinishedSpan,
    require_open: bool,
    /// The outbox is full: the open entry is deleted, nothing is queued.
    drop: bool,
    /// The span has no entry (saved before the ledger was used): one is
    /// created in the ended state.
    create: bool,
    /// Handed to this process's sender, which the entry names; otherwise
    /// the entry names none and any sender may send the span.
    to_sender: bool,
    /// An unassigned marker is still to be written (for a span not handed
    /// to this process's sender).
    marker: bool,
    /// Still to be written at all.
    live: bool,
}

/// Which operation of an end failed.
#[derive(Debug, Clone, Copy)]
enum Part {
    Entry,
    Marker,
}

impl EndPlan {
    /// Adjusts the plan to a failure of its `part`; false when the failure
    /// is not one a retry can settle.
    fn adjust(&mut self, part: Part, error: &StoreError) -> bool {
        match (part, error) {
            (Part::Entry, StoreError::NoNode { .. }) if self.require_open || self.drop => {
                self.live = false;
            }
            (Part::Entry, StoreError::NoNode { .. }) => {
                tracing::debug!(span = %self.key, "span has no entry; ended without one");
                self.create = true;
            }
            (Part::Entry, StoreError::NodeExists { .. }) => self.create = false,
            (Part::Entry, StoreError::BadVersion { .. }) => {
                // An orphan sweep racing a normal end is expected; anything
                // else is worth a warning.
                if self.require_open || self.drop {
                    tracing::debug!(span = %self.key, "span already ended; left alone");
                } else {
                    tracing::warn!(span = %self.key, name = %self.span.name,
                        "span already ended elsewhere; not ended again");
                }
                self.live = false;
            }
            // A marker left from an earlier end of the span: it serves this
            // end as well.
            (Part::Marker, StoreError::NodeExists { .. }) => self.marker = false,
            _ => return false,
        }
        true
    }

    /// Ended here and queued for the collector.
    fn queued(&self) -> bool {
        self.live && !self.drop
    }
}

impl Ledger {
    /// An empty set of spans to end.
    pub fn ends(&self) -> SpanEnds {
        SpanEnds::default()
    }

    /// Runs `ops` and the ends of `ends` as one multi-operation: each
    /// sampled span's entry is rewritten in place, from open (version 0) to
    /// ended (the finished span and who sends it), by a compare-and-set on
    /// version 0. That one row change is the whole end: the sender deletes
    /// the entry once the collector accepted the span. When the outbox has
    /// no room the span is dropped and its entry deleted. If any of `ops`
    /// fails (a lost compare-and-set), nothing is written and no span ends.
    ///
    /// A span without an entry (saved before the ledger was used) is still
    /// ended once; a span already ended by someone else is left out. The
    /// results of `ops` come first, in order. Once committed, the spans go
    /// through this ledger's [`Handoff`](crate::Handoff) to its sender;
    /// without one (or before it announced itself) each gets an unassigned
    /// marker for any sender.
    pub async fn commit(&self, ops: Vec<Op>, ends: SpanEnds) -> Result<Vec<OpResult>, LedgerError> {
        Ok(self.commit_counted(ops, ends).await?.0)
    }

    /// [`commit`](Self::commit), also telling how many spans it ended.
    pub(crate) async fn commit_counted(
        &self,
        ops: Vec<Op>,
        ends: SpanEnds,
    ) -> Result<(Vec<OpResult>, usize), LedgerError> {
        if ops.is_empty() && ends.is_empty() {
            return Ok((Vec::new(), 0));
        }
        self.shared.entries.ensure_layout().await?;
        let sender = self.handoff.as_ref().and_then(|h| h.sender_id());
        let mut plans = self.plan(ends, sender.is_some());
        // Each retry settles one part of one span, so this ends.
        let attempts = 1 + 3 * plans.len();
        for _ in 0..attempts {
            let (all, parts) = self.build(&ops, &plans, sender.unwrap_or(""));
            match self.store().multi(&all).await {
                Ok(mut results) => {
                    results.truncate(ops.len());
                    return Ok((results, self.hand_over(plans).await));
                }
                Err(StoreError::Multi { index, source }) if index >= ops.len() => {
                    let (plan, part) = parts[index - ops.len()];
                    if !plans[plan].adjust(part, &source) {
                        return Err(StoreError::Multi { index, source }.into());
                    }
                    if ops.is_empty() && plans.iter().all(|p| !p.live) {
                        return Ok((Vec::new(), 0));
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(LedgerError::Unsettled { attempts })
    }

    /// The first plan of each end. Unsampled spans were never tracked and
    /// are never exported: they are left out.
    fn plan(&self, ends: SpanEnds, to_sender: bool) -> Vec<EndPlan> {
        let full = !ends.is_empty() && self.is_full();
        let mut plans = Vec::with_capacity(ends.len());
        for (span, require_open) in ends.spans {
            let key = span_key(span.span_id);
            let sampled = span.trace_flags & 1 == 1;
            if sampled && full {
                self.count_drop(&key, &span.name, "the span outbox is full");
            }
            plans.push(EndPlan {
                key,
                span,
                require_open,
                drop: full,
                create: false,
                to_sender,
                marker: !to_sender,
                live: sampled,
            });
        }
        plans
    }

    /// The caller's `ops` followed by the operations of each live plan, and
    /// for each of those which plan and part it serves.
    fn build(&self, ops: &[Op], plans: &[EndPlan], sender: &str) -> (Vec<Op>, Vec<(usize, Part)>) {
        let paths = self.paths();
        let mut all = ops.to_vec();
        let mut parts = Vec::new();
        for (i, plan) in plans.iter().enumerate().filter(|(_, p)| p.live) {
            let entry = paths.entry(&plan.key);
            if plan.drop {
                all.push(Op::delete(entry, Some(0)));
                parts.push((i, Part::Entry));
                continue;
            }
            let data = ended_bytes(if plan.to_sender { sender } else { "" }, &plan.span);
            if plan.create {
                // Created and then moved past version 0 in one go, so a
                // later end finds it ended.
                all.push(Op::create(
                    entry.clone(),
                    data.clone(),
                    CreateMode::Persistent,
                ));
                parts.push((i, Part::Entry));
            }
            all.push(Op::set(entry, data, Some(0)));
            parts.push((i, Part::Entry));
            if plan.marker {
                let marker = paths.unassigned(&plan.key);
                all.push(Op::create(marker, Vec::new(), CreateMode::Persistent));
                parts.push((i, Part::Marker));
            }
        }
        (all, parts)
    }

    /// After the commit: hands the spans whose entries name this process's
    /// sender to it; returns how many spans the commit ended.
    async fn hand_over(&self, plans: Vec<EndPlan>) -> usize {
        self.forget_owners(plans.iter().map(|p| &p.key));
        let ended = plans.iter().filter(|p| p.queued()).count();
        let Some(handoff) = &self.handoff else {
            return ended;
        };
        for plan in plans.into_iter().filter(|p| p.queued() && p.to_sender) {
            let span = Handed {
                key: plan.key,
                span: plan.span,
            };
            if let Err(key) = handoff.pass(span) {
                // The sender is behind (or stopped): any sender's sweep
                // sends it.
                self.shared.entries.mark_unassigned(&key).await;
            }
        }
        ended
    }
}
