//! The OTLP crate's integration tests, one test binary (one link, and
//! tests of every module run side by side): exporters against the real
//! receiver over the wire, the receiver's limits, the collector,
//! OTLP-JSON lines, options, unreachable collectors, the trace view.
//!
//! Run: `cargo test -p dspans-otlp --test otlp [FILTER]`.

mod collector;
mod common;
mod export;
mod fuzz;
mod hardening;
mod jsonl;
mod options;
mod receiver;
mod unreachable;
mod view;
