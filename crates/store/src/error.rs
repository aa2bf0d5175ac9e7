//! Errors returned by every store operation.

/// Result type of the store crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An error from a store operation. Both backends report the same variants for
/// the same situation, so callers can match on them without knowing the backend.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The node (or, for a create, its parent) does not exist.
    #[error("no node at {path}")]
    NoNode {
        /// The missing path.
        path: String,
    },
    /// A create found the node already there.
    #[error("node {path} already exists")]
    NodeExists {
        /// The existing path.
        path: String,
    },
    /// A compare-and-set, delete or check found another version: nothing changed.
    #[error("version conflict at {path}: expected version {expected}")]
    BadVersion {
        /// The node whose version differed.
        path: String,
        /// The version the caller expected.
        expected: i32,
    },
    /// A delete of a node that still has children.
    #[error("node {path} has children")]
    NotEmpty {
        /// The node with children.
        path: String,
    },
    /// Ephemeral nodes cannot have children.
    #[error("cannot create {path}: its parent is ephemeral")]
    NoChildrenForEphemerals {
        /// The path whose creation was refused.
        path: String,
    },
    /// A value over the size limit ([`crate::MAX_VALUE_SIZE`]); nothing was written.
    #[error("value for {path} is {size} bytes, over the store limit of {limit} bytes")]
    TooLarge {
        /// The node that was to be written.
        path: String,
        /// The size of the refused value.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A multi-operation failed at `index`: nothing of it was applied.
    #[error("multi-operation failed at operation {index}: {source}")]
    Multi {
        /// Index (0-based) of the operation that failed.
        index: usize,
        /// Why it failed.
        source: Box<StoreError>,
    },
    /// A path that is not of the form `/a/b/c`.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The refused path.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An argument that makes no sense (for example an empty multi-operation).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The session of this store handle expired (or was closed): its ephemeral
    /// nodes and locks are gone. Open a new store to continue.
    #[error("session expired")]
    SessionExpired,
    /// The connection to the server was lost: the outcome of the operation is
    /// unknown. The client reconnects by itself; retrying reads is safe.
    #[error("connection to the store lost")]
    ConnectionLoss,
    /// The server refused the operation for lack of permission.
    #[error("not authorized to access {path}")]
    NoAuth {
        /// The node the operation touched.
        path: String,
    },
    /// A misconfiguration (bad `[store]` table, unreadable TLS file, ...).
    #[error("store configuration: {0}")]
    Config(String),
    /// A JSON value stored by a recipe could not be decoded or encoded.
    #[error("bad JSON at {path}: {message}")]
    Json {
        /// The node holding the value.
        path: String,
        /// The decoder's message.
        message: String,
    },
    /// There is no store at `path`: the SQLite file is missing, empty, or
    /// not a durable-spans store (another file, another database). Stores
    /// are created only on purpose: `dspans store init`, [`crate::init`] or
    /// [`crate::create`].
    #[error("no durable-spans store at {path}: {reason}")]
    NotAStore {
        /// The SQLite file.
        path: String,
        /// What is there instead.
        reason: String,
    },
    /// The store can no longer be used: its SQLite file is corrupt or not a
    /// database, or the file (or its write-ahead log) was replaced or
    /// removed while open. Retrying cannot help: the session ends with
    /// [`crate::SessionState::Failed`], every later operation of the handle
    /// fails with this error, and [`crate::Store::failure`] returns it.
    #[error("store {path} is unusable: {reason}")]
    Fatal {
        /// The SQLite file.
        path: String,
        /// What happened to it.
        reason: String,
    },
    /// Any other failure of the backend (I/O, SQLite, ZooKeeper protocol...).
    #[error("{backend} backend: {message}")]
    Backend {
        /// `"sqlite"` or `"zookeeper"`.
        backend: &'static str,
        /// What went wrong.
        message: String,
    },
}

impl StoreError {
    /// The error behind a [`StoreError::Multi`], or `self`.
    pub fn root_cause(&self) -> &StoreError {
        match self {
            StoreError::Multi { source, .. } => source.root_cause(),
            other => other,
        }
    }

    /// True for [`StoreError::BadVersion`] (also inside a multi-operation).
    pub fn is_bad_version(&self) -> bool {
        matches!(self.root_cause(), StoreError::BadVersion { .. })
    }

    /// True for [`StoreError::NoNode`] (also inside a multi-operation).
    pub fn is_no_node(&self) -> bool {
        matches!(self.root_cause(), StoreError::NoNode { .. })
    }

    /// True for [`StoreError::NodeExists`] (also inside a multi-operation).
    pub fn is_node_exists(&self) -> bool {
        matches!(self.root_cause(), StoreError::NodeExists { .. })
    }

    /// True for [`StoreError::Fatal`] (also inside a multi-operation):
    /// the store handle is unusable and retrying cannot help.
    pub fn is_fatal(&self) -> bool {
        matches!(self.root_cause(), StoreError::Fatal { .. })
    }

    pub(crate) fn sqlite(err: impl std::fmt::Display) -> StoreError {
        StoreError::Backend {
            backend: "sqlite",
            message: err.to_string(),
        }
    }
}
