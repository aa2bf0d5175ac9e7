//! Plain data types shared by the trait and both backends.

use tokio::sync::mpsc;

/// Largest value (in bytes) a node may hold, on both backends.
///
/// ZooKeeper refuses packets over `jute.maxbuffer` (1 MiB by default, path and
/// headers included); this limit leaves room for both. A multi-operation is
/// one packet, so the sum of its values is held to the same limit. SQLite
/// uses the same limit so that code behaves identically on both backends.
/// Larger values are refused with [`crate::StoreError::TooLarge`], never
/// truncated.
pub const MAX_VALUE_SIZE: usize = 1_000_000;

/// How a node is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CreateMode {
    /// Stays until deleted.
    Persistent,
    /// Deleted when the creating store's session ends (close, crash, expiry).
    Ephemeral,
    /// Persistent; the store appends a 10-digit sequence number, unique and
    /// increasing among the parent's children, to the given path.
    PersistentSequential,
    /// Ephemeral and sequential.
    EphemeralSequential,
}

impl CreateMode {
    /// True for the ephemeral modes.
    pub fn is_ephemeral(self) -> bool {
        matches!(
            self,
            CreateMode::Ephemeral | CreateMode::EphemeralSequential
        )
    }

    /// True for the sequential modes.
    pub fn is_sequential(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentSequential | CreateMode::EphemeralSequential
        )
    }
}

/// Metadata of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    /// Number of changes to the data; 0 after create. Pass it to
    /// [`crate::Store::set`] / [`crate::Store::delete`] for compare-and-set.
    pub version: i32,
    /// Number of changes to the list of children.
    pub cversion: i32,
    /// Store-wide id of the change that created the node (ZooKeeper's czxid).
    pub created_id: i64,
    /// Store-wide id of the change that last modified the data (mzxid).
    pub modified_id: i64,
    /// Creation time, milliseconds since the Unix epoch.
    pub ctime_ms: i64,
    /// Last modification time, milliseconds since the Unix epoch.
    pub mtime_ms: i64,
    /// True when the node is ephemeral.
    pub ephemeral: bool,
    /// For an ephemeral node, the [`crate::Store::session_id`] of the
    /// session owning it; 0 for a persistent node.
    pub owner_session: i64,
    /// Length of the data in bytes.
    pub data_length: usize,
    /// Number of children.
    pub num_children: usize,
}

/// A node's data and metadata, as returned by [`crate::Store::get`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The value.
    pub data: Vec<u8>,
    /// Its metadata; `stat.version` is the version for compare-and-set.
    pub stat: Stat,
}

/// One operation of an atomic multi-operation ([`crate::Store::multi`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Fails unless the node exists with this version.
    Check {
        /// Node to check.
        path: String,
        /// Required version.
        version: i32,
    },
    /// Creates a node (see [`crate::Store::create`]).
    Create {
        /// Path (prefix for sequential modes).
        path: String,
        /// Value.
        data: Vec<u8>,
        /// Mode.
        mode: CreateMode,
    },
    /// Sets a node's value; `version: None` skips the version check.
    Set {
        /// Node to change.
        path: String,
        /// New value.
        data: Vec<u8>,
        /// Expected version.
        version: Option<i32>,
    },
    /// Deletes a node; `version: None` skips the version check.
    Delete {
        /// Node to delete.
        path: String,
        /// Expected version.
        version: Option<i32>,
    },
}

impl Op {
    /// The path the operation touches.
    pub fn path(&self) -> &str {
        match self {
            Op::Check { path, .. }
            | Op::Create { path, .. }
            | Op::Set { path, .. }
            | Op::Delete { path, .. } => path,
        }
    }

    /// Shorthand for [`Op::Check`].
    pub fn check(path: impl Into<String>, version: i32) -> Op {
        Op::Check {
            path: path.into(),
            version,
        }
    }

    /// Shorthand for [`Op::Create`].
    pub fn create(path: impl Into<String>, data: impl Into<Vec<u8>>, mode: CreateMode) -> Op {
        Op::Create {
            path: path.into(),
            data: data.into(),
            mode,
        }
    }

    /// Shorthand for [`Op::Set`].
    pub fn set(path: impl Into<String>, data: impl Into<Vec<u8>>, version: Option<i32>) -> Op {
        Op::Set {
            path: path.into(),
            data: data.into(),
            version,
        }
    }

    /// Shorthand for [`Op::Delete`].
    pub fn delete(path: impl Into<String>, version: Option<i32>) -> Op {
        Op::Delete {
            path: path.into(),
            version,
        }
    }
}

/// Result of one operation of a successful multi-operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// The check passed.
    Checked,
    /// The node was created at this path (with the sequence suffix if any).
    Created {
        /// Actual path.
        path: String,
    },
    /// The value was set; this is the node's new version.
    Set {
        /// New version.
        version: i32,
    },
    /// The node was deleted.
    Deleted,
}

/// What changed, in a [`WatchEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The watched node was created.
    Created,
    /// The watched node was deleted.
    Deleted,
    /// The watched node's data changed.
    DataChanged,
    /// A child was added to or removed from the watched node.
    ChildrenChanged,
    /// The session ended: no more events will come on this watch.
    SessionLost,
}

/// A change notification.
///
/// Events are hints that something changed: re-read the node to see its
/// current state. Changes close together may be reported as one event
/// (always on SQLite, which polls; after a reconnect on ZooKeeper).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// What happened.
    pub kind: EventKind,
    /// The watched path.
    pub path: String,
}

/// A stream of change notifications for one path, from [`crate::Store::watch`]
/// or [`crate::Store::watch_children`]. Dropping it ends the watch.
#[derive(Debug)]
pub struct Watch {
    pub(crate) rx: mpsc::Receiver<WatchEvent>,
}

impl Watch {
    /// Capacity of the event buffer. When a consumer lags this far behind,
    /// further events are dropped (the consumer re-reads state anyway).
    pub const BUFFER: usize = 64;

    pub(crate) fn channel() -> (mpsc::Sender<WatchEvent>, Watch) {
        let (tx, rx) = mpsc::channel(Self::BUFFER);
        (tx, Watch { rx })
    }

    /// Waits for the next event; `None` once the watch has ended (store
    /// closed or session lost, after a [`EventKind::SessionLost`] event).
    pub async fn next(&mut self) -> Option<WatchEvent> {
        self.rx.recv().await
    }

    /// Waits for the next event for at most `timeout`; `None` on timeout or
    /// when the watch has ended.
    pub async fn next_timeout(&mut self, timeout: std::time::Duration) -> Option<WatchEvent> {
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Discards events already received, without waiting.
    pub fn drain(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }
}

/// State of a store handle's session.
///
/// Ephemeral nodes and locks belong to a session. Read it through
/// [`crate::Store::session`]; the receiver is told of every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Connected; ephemeral nodes of the session exist.
    Connected,
    /// Connection lost for now (ZooKeeper only); the client is reconnecting.
    /// The session and its ephemeral nodes survive if it reconnects within
    /// the session timeout.
    Disconnected,
    /// The session expired: its ephemeral nodes are deleted and its locks
    /// lost. Terminal: every further operation fails with
    /// [`crate::StoreError::SessionExpired`]; open a new store.
    Expired,
    /// The store was closed by its owner. Terminal.
    Closed,
    /// The store became unusable (SQLite only: its file is corrupt, or it
    /// or its write-ahead log was replaced or removed while open).
    /// Terminal: every further operation fails with
    /// [`crate::StoreError::Fatal`], which [`crate::Store::failure`] returns;
    /// opening the store again will not help until the file is repaired.
    Failed,
}

impl SessionState {
    /// True for [`SessionState::Expired`], [`SessionState::Closed`] and
    /// [`SessionState::Failed`].
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SessionState::Expired | SessionState::Closed | SessionState::Failed
        )
    }
}
