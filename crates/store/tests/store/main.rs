//! The store's integration tests, one test binary (one link, and tests of
//! every module run side by side): the conformance suite on SQLite and on a
//! real ZooKeeper server, configuration and SQLite specifics, ZooKeeper
//! options and restarts. ZooKeeper servers are started through
//! `scripts/zookeeper.sh` by `dspans-test-support`.
//!
//! Run: `cargo test -p dspans-store --test store [FILTER]`.

mod common;
mod config_and_sqlite;
mod conformance;
mod sqlite_files;
mod zookeeper_acl;
mod zookeeper_options;
mod zookeeper_restart;
mod zookeeper_tls;
