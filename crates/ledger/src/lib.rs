//! Durable bookkeeping of saved spans in the coordination store.
//!
//! Zuul ends a saved span by restoring it and exporting it at once: two
//! hosts racing to end it both export it, and a span still in the export
//! buffer when the process dies is gone. This crate closes both gaps with
//! three store directories under one root (for the pipeline
//! `/dspans/spans`):
//!
//! ```text
//! <root>/open/<span id>     one entry per started, not yet sent span: its
//!                           span info and the path of its owning object
//! <root>/outbox/<span id>   one entry per ended span waiting for export
//! <root>/claims/<span id>   ephemeral: the process exporting that entry
//! ```
//!
//! - **One end.** [`Ledger::commit`] adds "the open entry exists, create the
//!   outbox entry" to the caller's own multi-operation (the compare-and-set
//!   that records the end on the owning object). Exactly one of two racing
//!   hosts succeeds; the other ends nothing. The open entry is deleted with
//!   the outbox entry once the span is sent.
//! - **Nothing lost.** The outbox entry is written with the owner's change,
//!   and deleted by an [`OutboxExporter`] only after the collector accepted
//!   the span. A process killed at any point leaves the entry (its claim
//!   vanishes with its session) and any other exporter sends it.
//! - **Orphans.** An open entry whose owner is gone is ended by
//!   [`Ledger::sweep_orphans`] with status ERROR and `dspans.orphaned=true`.
//! - **Bounded.** Past [`LedgerLimits::max_outbox`] entries, ended spans are
//!   not queued: each drop is counted ([`Ledger::dropped`]) and logged.
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
//! // End: the owner's deletion, a check of the open entry and the outbox
//! // entry in one transaction.
//! let mut ends = ledger.ends();
//! ends.push(tracer.finish_saved_span(Some(&info), EndOptions::new()));
//! ledger.commit(vec![Op::delete(owner, None)], ends).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod exporter;
mod ledger;
mod orphans;
mod paths;

pub use exporter::{ExporterOptions, ExporterStats, OutboxExporter};
pub use ledger::{Ledger, LedgerLimits, OpenSpan, SpanEnds};
pub use paths::{span_key, LedgerPaths};
