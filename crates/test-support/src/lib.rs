//! The harness shared by the integration tests of every crate of the
//! workspace, so that each crate tests against the same real parts:
//!
//! - [`TestReceiver`]: a real OTLP receiver (gRPC and HTTP) running in the
//!   test process on a runtime of its own, keeping what it receives;
//! - [`ZkServer`]: a real ZooKeeper server per test, started through
//!   `scripts/zookeeper.sh` on a [`free_port`];
//! - [`TlsZkServer`]: one that also serves TLS, with a [`Ca`] and
//!   certificates made by the test; [`ZkEnsemble`]: three as one ensemble;
//! - [`Backend`]: the coordination store a test case runs against, for
//!   `rstest` cases that run one body on each;
//! - [`process`]: child processes with a log each, signals, bounded waits
//!   for their exit, and [`process::Turns`] to bound how many
//!   process-heavy tests run at once;
//! - [`wait_for`] and [`wait_until`]: polls of a condition with a
//!   deadline, never a fixed sleep;
//! - [`attr`]: the value of a span attribute as OTLP carried it.
//!
//! The crate depends on `dspans-otlp` only (besides tokio, tempfile and
//! rcgen):
//! each crate's tests keep the pieces that need that crate's own types.
//!
//! ```no_run
//! use std::time::Duration;
//! use dspans_test_support::{Backend, TestReceiver};
//!
//! let receiver = TestReceiver::start();
//! // … configure an exporter with `receiver.endpoint()` and end spans …
//! let spans = receiver.wait_for_spans(3, Duration::from_secs(20));
//! assert_eq!(spans.len(), 3);
//! let zookeeper = Backend::Zookeeper.server(); // Some(server) for ZooKeeper
//! ```

mod attributes;
mod backend;
mod ports;
pub mod process;
mod receiver;
mod wait;
mod zookeeper;
mod zookeeper_ensemble;
mod zookeeper_tls;

pub use attributes::{attr, string};
pub use backend::Backend;
pub use ports::free_port;
pub use receiver::TestReceiver;
pub use wait::{wait_for, wait_until};
pub use zookeeper::{ZkServer, zookeeper_script};
pub use zookeeper_ensemble::ZkEnsemble;
pub use zookeeper_tls::{Ca, TlsZkServer};
