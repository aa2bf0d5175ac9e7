//! The integration tests of `durable-spans`, one test binary (one link,
//! and tests of every module run side by side): Zuul's API and recorded
//! values against a real OTLP receiver, the tracing bridge, fallbacks for
//! missing or bad span data, span kinds, and property tests of the
//! decoders.
//!
//! Run: `cargo test -p durable-spans --test durable_spans [FILTER]`.

mod common;
mod decoders_prop;
mod fallbacks;
mod span_kinds;
mod tracing_bridge;
mod zuul_api;
mod zuul_fixtures;
