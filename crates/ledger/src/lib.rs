//! Durable bookkeeping of saved spans in the coordination store.
//!
//! Zuul ends a saved span by restoring it and exporting it at once: two
//! hosts racing to end it both export it, and a span still in the export
//! buffer when the process dies is gone. This crate closes both gaps with
//! one entry per span in the store, under one root (for the pipeline
//! `/dspans/spans`):
//!
//! ```text
//! <root>/open/<span id>       the span's entry: open (version 0: span info
//!                             and owning object), then ended (the finished
//!                             span and the exporter sending it) until sent
//! <root>/exporters/<session>  ephemeral: a running exporter
//! <root>/outbox/<span id>     marker: an ended span any exporter may send
//! <root>/claims/<span id>     ephemeral: the exporter sending a marked span
//! ```
//!
//! - **One end.** [`Ledger::commit`] adds "set the entry to the finished
//!   span, expecting version 0" to the caller's own multi-operation (the
//!   compare-and-set that records the end on the owning object). Exactly
//!   one of two racing hosts succeeds; the other ends nothing. One row
//!   changes in place, so the end costs the caller little.
//! - **Nothing lost.** The entry is deleted by an [`OutboxExporter`] only
//!   after the collector accepted the span. When a process dies, its
//!   exporter's presence node goes with its session; the others then mark
//!   its ended spans for sending, and one of them claims and sends each.
//! - **Orphans.** An open entry whose owner is gone is ended by
//!   [`Ledger::sweep_orphans`] with status ERROR and `dspans.orphaned=true`.
//! - **Bounded.** Past [`LedgerLimits::max_outbox`] unsent spans, ended
//!   spans are not queued: each drop is counted ([`Ledger::dropped`]) and
//!   logged.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn dspans_store::Store>,
//! #               tracer: durable_spans::DurableTracer) -> Result<(), dspans_store::StoreError> {
//! use dspans_ledger::Ledger;
//! use dspans_store::{CreateMode, Op};
//! use durable_spans::{EndOptions, SavedSpanOptions};
//!
//! let ledger = Ledger::new(store.clone(), "/dspans/spans");
//! // Start: the owner and the open entry are written together.
//! let info = tracer.start_saved_span("Build", SavedSpanOptions::new()).unwrap();
//! let owner = "/builds/b1";
//! let mut ops = vec![Op::create(owner, info.to_json(), CreateMode::Persistent)];
//! ops.extend(ledger.open_op(&info, owner)); // None for unsampled spans
//! ledger.commit(ops, ledger.ends()).await?;
//! // End: the owner's deletion and the entry's change to the finished
//! // span in one transaction.
//! let mut ends = ledger.ends();
//! ends.push(tracer.finish_saved_span(Some(&info), EndOptions::new()));
//! ledger.commit(vec![Op::delete(owner, None)], ends).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod entry;
mod exporter;
mod ledger;
mod orphans;
mod paths;

pub use exporter::{ExporterOptions, ExporterStats, OutboxExporter};
pub use ledger::{Ledger, LedgerLimits, OpenSpan, SpanEnds};
pub use paths::{span_key, LedgerPaths};
