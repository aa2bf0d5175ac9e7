//! The reference gating pipeline of durable-spans: the foundation shared by
//! its scheduler, executor and merger processes.
//!
//! - [`config`]: the TOML file every component reads (`[store]`,
//!   `[tracing]`, `[[pipeline]]`, `[[job]]`, `[[project]]`), strictly
//!   parsed, with errors that name the file, key and reason.
//! - [`model`]: the objects kept in the store as JSON, each carrying its
//!   span data as docs/spans.md says, read leniently so objects without
//!   (or with damaged) span data still work.
//! - [`layout`]: the store path of every object, in one place.
//! - [`component`]: one component process assembled and shut down in one
//!   place (store session, tracer, span ledger and its outbox sender,
//!   SIGTERM); [`worker`]: the queue worker that executors and mergers are.
//!
//! ```
//! use dspans_pipeline::{config::Config, layout::Layout};
//! let config: Config = r#"
//!     [[pipeline]]
//!     name = "gate"
//!     manager = "dependent"
//!
//!     [[job]]
//!     name = "unit"
//!     run = "true"
//!
//!     [[project]]
//!     name = "org/project"
//!     gate = ["unit"]
//! "#.parse().unwrap();
//! let jobs = config.jobs_for("org/project", "gate").unwrap();
//! assert_eq!(jobs[0].timeout_s, 600);
//! assert_eq!(Layout::default().change_queue("gate", "default"), "/dspans/pipelines/gate/queues/default");
//! ```

mod build_logs;
pub mod component;
pub mod config;
pub mod executor;
pub mod layout;
pub mod lenient_context;
pub mod merger;
pub mod model;
pub mod process;
pub mod quiet;
pub mod scheduler;
mod scratch;
pub mod worker;

pub use config::{Config, ConfigError};
pub use layout::Layout;
pub use model::{ModelError, StoredObject};
