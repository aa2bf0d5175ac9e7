//! The pipeline's integration tests, one test binary (one link, and tests
//! of every module run side by side): config, the stored model and the
//! store layout, and the executor, merger and scheduler against a SQLite
//! store and a real OTLP receiver.
//!
//! Run: `cargo test -p dspans-pipeline --test pipeline [FILTER]`.

mod config;
mod executor;
mod layout;
mod merger;
mod model;
mod quiet;
mod scheduler;
mod support;
