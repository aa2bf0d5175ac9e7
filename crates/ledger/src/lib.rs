//! Durable bookkeeping of saved spans in the coordination store.
//!
//! Zuul ends a saved span by restoring it and exporting it at once: two
//! hosts racing to end it both export it, and a span still in the export
//! buffer when the process dies is gone. This crate closes both gaps with
//! one entry per span in the store, under one root (for the pipeline
//! `/dspans/spans`):
//!
//! ```text
//! <root>/entries/<span id>     the span's entry: open (version 0: span info
//!                              and owning object), then ended (the finished
//!                              span and the sender sending it) until the
//!                              collector accepted it
//! <root>/senders/<session>     ephemeral: a running sender
//! <root>/unassigned/<span id>  marker: an ended span any sender may send
//! <root>/claims/<span id>      ephemeral: the sender sending an unassigned span
//! ```
//!
//! One span's way, one direction: a [`Ledger`] writes its open entry with
//! the owner and ends it in the owner's transaction ([`Ledger::commit`]);
//! the commit passes it through the [`Handoff`] to this process's
//! [`OutboxSender`], which exports it and deletes the entry right after the
//! collector accepted it.
//!
//! - **One end.** [`Ledger::commit`] adds "set the entry to the finished
//!   span, expecting version 0" to the caller's own multi-operation (the
//!   compare-and-set that records the end on the owning object). Exactly
//!   one of two racing hosts succeeds; the other ends nothing. One row
//!   changes in place, so the end costs the caller little.
//! - **Nothing lost.** The entry is deleted by an [`OutboxSender`] only
//!   after the collector accepted the span. When a process dies, its
//!   sender's presence node goes with its session; the others then make its
//!   ended spans unassigned, and one of them claims and sends each.
//! - **Orphans.** An open entry whose owner is gone is ended by
//!   [`Ledger::sweep_orphans`] with status ERROR and `dspans.orphaned=true`.
//! - **Bounded.** Past [`LedgerLimits::max_outbox`] unsent spans, ended
//!   spans are not queued: each drop is counted ([`Ledger::dropped`]) and
//!   logged.
//!
//! The modules, by concern: `entry` (what an entry holds), `entries` (the
//! records in the store), `ledger` and `commit` (writing entries and ending
//! spans), `orphans`, `handoff` (the one way from commits to the sender),
//! `sender`, `batch`, `delivery` and `claims` (sending the outbox), and
//! `takeover` (senders that are gone).
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn dspans_store::Store>,
//! #               tracer: durable_spans::DurableTracer,
//! #               exporter: impl opentelemetry_sdk::trace::SpanExporter + 'static)
//! #               -> Result<(), dspans_ledger::LedgerError> {
//! use dspans_ledger::{Ledger, OutboxSender, SenderOptions};
//! use dspans_store::{CreateMode, Op};
//! use durable_spans::{EndOptions, SavedSpanOptions};
//!
//! let sender = OutboxSender::new(
//!     store.clone(), "/dspans/spans", exporter, &tracer, "scheduler-1", SenderOptions::default(),
//! );
//! let ledger = Ledger::new(store.clone(), "/dspans/spans").with_handoff(sender.handoff());
//! tokio::spawn(sender.run(std::future::pending()));
//! // Start: the owner and the open entry are written together.
//! let info = tracer.start_saved_span("Build", SavedSpanOptions::new()).unwrap();
//! let owner = "/builds/b1";
//! let mut ops = vec![Op::create(owner, info.to_json(), CreateMode::Persistent)];
//! ops.extend(ledger.open_op(&info, owner)); // None for unsampled spans
//! ledger.commit(ops, ledger.ends()).await?;
//! // End: the owner's deletion and the entry's change to the finished
//! // span in one transaction; then the span goes to the sender.
//! let mut ends = ledger.ends();
//! ends.push(tracer.finish_saved_span(Some(&info), EndOptions::new()));
//! ledger.commit(vec![Op::delete(owner, None)], ends).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod batch;
mod claims;
mod commit;
mod delivery;
mod entries;
mod entry;
mod error;
mod handoff;
mod ledger;
mod orphans;
mod paths;
mod sender;
mod takeover;

pub use commit::SpanEnds;
pub use error::LedgerError;
pub use handoff::Handoff;
pub use ledger::{Ledger, LedgerLimits, OpenSpan};
pub use paths::{span_key, LedgerPaths};
pub use sender::{OutboxSender, SenderOptions, SenderStats};
