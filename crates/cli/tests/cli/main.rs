//! The `dspans` command's integration tests, one test binary (one link,
//! and tests of every module run side by side): the reference pipeline as
//! OS processes on SQLite and on a real ZooKeeper (gate runs, handovers,
//! SIGTERM, chaos), `dspans span`, the collector and its views, the demo,
//! the HTML report in headless Chromium, the Python OpenTelemetry client
//! against `dspans collector`, and ZooKeeper TLS with the system's CAs.
//!
//! Run: `cargo test -p dspans-cli --test cli [FILTER]`. The scenarios that
//! start many processes take turns, two at a time (`DSPANS_HEAVY_TESTS`
//! sets another number).

mod chaos;
mod collector_hardening;
mod collector_view;
mod crashes;
mod demo;
mod pipeline_processes;
mod python_client;
mod relay;
mod report_browser;
mod results;
mod sampling;
mod send_and_forward;
mod span_cli;
mod span_exec;
mod status_sigterm;
mod store_files;
mod support;
mod ui_browser;
mod zookeeper_tls;
