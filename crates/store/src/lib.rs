//! Coordination store for durable-spans.
//!
//! One async trait, [`Store`], with two backends that pass the same
//! conformance suite:
//!
//! - **SQLite** ([`SqliteStore`], the default): one database file shared by
//!   the processes of one machine, sessions as lease rows with heartbeats,
//!   notifications by polling a change counter.
//! - **ZooKeeper** ([`ZkStore`]): a real ZooKeeper ensemble through
//!   `zookeeper-client`; `scripts/zookeeper.sh` runs a local server.
//!
//! Recipes built only on the trait (so identical on both backends):
//! [`recipes::Lock`], [`recipes::JobQueue`] and [`recipes::EventQueue`].
//!
//! A SQLite store is created on purpose, once ([`init`], or [`create`] =
//! init then open; `dspans store init` on the command line); [`open`]
//! refuses a missing, empty or foreign file ([`StoreError::NotAStore`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), dspans_store::StoreError> {
//! use dspans_store::{open, recipes::Lock, StoreConfig};
//! dspans_store::init(&StoreConfig::default()).await?; // sqlite, state/dspans.db
//! let store = open(&StoreConfig::default()).await?;
//! let lock = Lock::new(store.clone(), "/locks/pipeline-gate");
//! let guard = lock.acquire(b"scheduler-1", None).await?.expect("no timeout given");
//! // ... work while guard.is_held() ...
//! guard.release().await?;
//! # Ok(()) }
//! ```

mod bench;
mod config;
mod counting;
mod error;
mod path;
pub mod recipes;
mod sqlite;
mod store;
mod types;
mod zk;
mod zk_tls;

use std::sync::Arc;

pub use bench::{bench, BenchResult};
pub use config::{Backend, StoreConfig};
pub use counting::CountingStore;
pub use error::{Result, StoreError};
pub use path::{join_path, node_name, parent_path, sequence_of, validate_path};
pub use sqlite::SqliteStore;
pub use store::{Store, EXISTS_ALL_CHUNK};
pub use types::{
    CreateMode, EventKind, Node, Op, OpResult, SessionState, Stat, Watch, WatchEvent,
    MAX_VALUE_SIZE,
};
pub use zk::ZkStore;

/// What [`init`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initialized {
    /// It created the SQLite file, with the store's tables.
    Created,
    /// The store was there already: a SQLite file with the store's tables
    /// (left as it was), or a ZooKeeper ensemble, which needs no creating
    /// (`init` connected, and created the chroot node if missing).
    Existing,
}

/// Creates the store a configuration names unless it exists. SQLite: a new
/// file with the store's tables, mode `file_mode` (0600 by default) in a
/// directory created `0700` when missing; an existing store is left as it
/// is, and an existing file that is empty or not a store is refused with
/// [`StoreError::NotAStore`]. ZooKeeper: connects (checking the address,
/// TLS and authentication) and creates the chroot node when configured.
///
/// ```no_run
/// # async fn demo() -> Result<(), dspans_store::StoreError> {
/// use dspans_store::{init, Initialized, StoreConfig};
/// let cfg = StoreConfig::sqlite("state/dspans.db");
/// if init(&cfg).await? == Initialized::Created {
///     println!("created {}", cfg.path.display());
/// }
/// # Ok(()) }
/// ```
pub async fn init(config: &StoreConfig) -> Result<Initialized> {
    match config.backend {
        Backend::Sqlite => SqliteStore::init(config).await,
        Backend::Zookeeper => {
            ZkStore::open(config).await?.close().await?;
            Ok(Initialized::Existing)
        }
    }
}

/// [`init`], then [`open`]: for programs and tests that own their store.
pub async fn create(config: &StoreConfig) -> Result<Arc<dyn Store>> {
    init(config).await?;
    open(config).await
}

/// Opens the store a configuration names, with a new session. A SQLite
/// store must exist ([`init`]): a missing, empty or foreign file is
/// [`StoreError::NotAStore`] naming it.
///
/// ```no_run
/// # async fn demo() -> Result<(), dspans_store::StoreError> {
/// let cfg = dspans_store::StoreConfig::zookeeper("127.0.0.1:2181").with_chroot("/dspans");
/// let store = dspans_store::open(&cfg).await?;
/// println!("{} session {}", store.backend(), store.session_id());
/// # Ok(()) }
/// ```
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn Store>> {
    Ok(match config.backend {
        Backend::Sqlite => Arc::new(SqliteStore::open(config).await?),
        Backend::Zookeeper => Arc::new(ZkStore::open(config).await?),
    })
}

/// Checks a multi-operation before sending it: not empty, valid paths, and
/// values within [`MAX_VALUE_SIZE`] each and in total (ZooKeeper sends a
/// multi-operation as one packet). A failure names the operation's index.
pub(crate) fn check_multi(ops: &[Op]) -> Result<()> {
    if ops.is_empty() {
        return Err(StoreError::InvalidArgument(
            "empty multi-operation".to_string(),
        ));
    }
    let mut total = 0usize;
    for (index, op) in ops.iter().enumerate() {
        let fail = |source| StoreError::Multi {
            index,
            source: Box::new(source),
        };
        validate_path(op.path()).map_err(fail)?;
        if let Op::Create { data, .. } | Op::Set { data, .. } = op {
            total += data.len();
            if total > MAX_VALUE_SIZE {
                return Err(fail(StoreError::TooLarge {
                    path: op.path().to_string(),
                    size: total,
                    limit: MAX_VALUE_SIZE,
                }));
            }
        }
    }
    Ok(())
}
