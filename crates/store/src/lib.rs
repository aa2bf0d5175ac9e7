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
//! ```no_run
//! # async fn demo() -> Result<(), dspans_store::StoreError> {
//! use dspans_store::{open, recipes::Lock, StoreConfig};
//! let store = open(&StoreConfig::default()).await?; // sqlite, state/dspans.db
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

/// Opens the store a configuration names, with a new session.
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
