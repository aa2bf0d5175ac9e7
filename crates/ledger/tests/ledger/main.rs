//! The ledger's integration tests, one test binary (one link, and tests of
//! every module run side by side): the span ledger against real stores
//! (SQLite and a ZooKeeper server of the test's own) and a real OTLP/gRPC
//! receiver, and two OS processes racing to end the same spans.
//!
//! Run: `cargo test -p dspans-ledger --test ledger [FILTER]`.

mod ledger;
mod race;
mod support;
